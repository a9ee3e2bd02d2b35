//! Crash recovery: kill -9 of the server while runs are going loses no run and repeats none.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

const LONG: Duration = Duration::from_secs(60);
const GATE: &str =
    "echo started; while [ ! -e /work/tmp/go ]; do sleep 0.05; done; echo finished; exit 7";

fn release(server: &Server, run_id: &str) {
    std::fs::write(
        server
            .data_dir()
            .join("runs")
            .join(run_id)
            .join("work/tmp/go"),
        "",
    )
    .expect("release the job");
}

#[test]
fn a_run_survives_a_server_kill_and_is_readopted() {
    let mut server = Server::start();
    server.deploy(shell_job("survivor", GATE, "retries = 2").path());
    let id = server.start_run("survivor", json!({}));
    server.wait_state(&id, "running", LONG);

    server.kill9();
    server.restart();
    // Re-adopted: still running, then its real exit is recorded after release.
    assert_eq!(server.run(&id)["state"], "running");
    release(&server, &id);
    let run = server.wait_finished(&id, LONG);
    assert_eq!(run["state"], "failed");
    assert_eq!(run["exit_code"], 7);
    let log = server.log_text(&id);
    assert!(log.contains("started") && log.contains("finished"), "{log}");
    // Not repeated: the failure is retried as policy says, but the run itself ran once.
    let runs = server.get("/runs?app=survivor&limit=100");
    let attempts_of_first: Vec<_> = runs
        .as_array()
        .expect("runs")
        .iter()
        .filter(|r| r["attempt"] == 1)
        .collect();
    assert_eq!(attempts_of_first.len(), 1);
}

#[test]
fn a_run_that_ends_while_the_server_is_down_gets_its_recorded_exit() {
    let mut server = Server::start();
    server.deploy(shell_job("finisher", GATE, "").path());
    let id = server.start_run("finisher", json!({}));
    server.wait_state(&id, "running", LONG);
    server.kill9();
    let run_dir = server.data_dir().join("runs").join(&id);
    release(&server, &id);
    wait_for("the supervisor to record the exit", LONG, || {
        run_dir.join("status.json").exists().then_some(())
    });
    server.restart();
    let run = server.wait_finished(&id, LONG);
    assert_eq!(run["state"], "failed");
    assert_eq!(run["exit_code"], 7);
    let runs = server.get("/runs?app=finisher");
    assert_eq!(
        runs.as_array().map(Vec::len),
        Some(1),
        "the run was not repeated"
    );
}

#[test]
fn a_run_whose_supervisor_died_too_is_lost_and_retried() {
    let mut server = Server::start();
    server.deploy(shell_job("orphan", GATE, "retries = 1\nretry_backoff = \"100ms\"").path());
    let id = server.start_run("orphan", json!({}));
    server.wait_state(&id, "running", LONG);
    server.kill9();
    let run_dir = server.data_dir().join("runs").join(&id);
    let pid: i32 = std::fs::read_to_string(run_dir.join("shim.pid"))
        .expect("shim.pid")
        .trim()
        .parse()
        .expect("pid");
    unsafe { libc::kill(pid, libc::SIGKILL) };
    wait_for("the supervisor to die", LONG, || {
        (!wharf_runtime::is_alive(&run_dir).unwrap_or(true)).then_some(())
    });
    server.restart();
    let run = server.wait_finished(&id, LONG);
    assert_eq!(run["state"], "lost");
    assert!(
        run["error"]
            .as_str()
            .unwrap_or_default()
            .contains("supervisor"),
        "{run}"
    );
    let retry = run["retried_by"]
        .as_str()
        .expect("a lost run is retried")
        .to_owned();
    server.wait_state(&retry, "running", LONG);
    release(&server, &retry);
    let retried = server.wait_finished(&retry, LONG);
    assert_eq!(retried["exit_code"], 7);
}

#[test]
fn queued_runs_survive_a_restart() {
    let mut server = Server::start();
    server.deploy(shell_job("patient", GATE, "concurrency = 1").path());
    let first = server.start_run("patient", json!({}));
    let second = server.start_run("patient", json!({}));
    server.wait_state(&first, "running", LONG);
    server.restart();
    assert_eq!(server.run(&second)["state"], "queued");
    release(&server, &first);
    server.wait_state(&second, "running", LONG);
    release(&server, &second);
    assert_eq!(server.wait_finished(&second, LONG)["exit_code"], 7);
    let runs = server.get("/runs?app=patient");
    assert_eq!(runs.as_array().map(Vec::len), Some(2));
}

#[test]
fn finished_runs_past_their_retention_are_deleted_with_their_logs() {
    let mut server = Server::start_with("kill_grace = \"1s\"\nlog_retention = \"1s\"\n");
    server.deploy(shell_job("ephemeral", "echo bye", "").path());
    let id = server.start_run("ephemeral", json!({}));
    server.wait_finished(&id, LONG);
    let run_dir = server.data_dir().join("runs").join(&id);
    assert!(run_dir.join("log.jsonl").exists());
    // Retention is checked at start and hourly; a restart once the run is older than 1s
    // sweeps it.
    let finished = std::time::Instant::now();
    wait_for("the run to age past its retention", LONG, || {
        (finished.elapsed() > Duration::from_millis(1100)).then_some(())
    });
    server.restart();
    wait_for("the sweep", LONG, || (!run_dir.exists()).then_some(()));
    let gone = server
        .http()
        .get(format!("{}/api/v1/runs/{id}", server.url()))
        .bearer_auth(&server.token)
        .send()
        .expect("get");
    assert_eq!(gone.status().as_u16(), 404);
}
