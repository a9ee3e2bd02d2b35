//! The upload → run pipeline end to end, with the real binary, real bubblewrap and real
//! R: an object uploaded to a bucket starts the job that watches it, the job sees the
//! staged file and the event, its outputs land in the output bucket and the input is
//! archived; and a crash of the server in the middle of a stream of uploads neither
//! loses nor doubles a run.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::{app_folder, repo_root, wait_for, Server};
use serde_json::Value;

/// Runs of an app, newest first.
fn runs_of(server: &Server, app: &str) -> Vec<Value> {
    server
        .get(&format!("/apps/{app}/runs?limit=1000"))
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn finished_event_run(server: &Server, app: &str, timeout: Duration) -> Value {
    wait_for(
        &format!("an event-triggered run of {app} to end"),
        timeout,
        || {
            runs_of(server, app).into_iter().find(|run| {
                run["trigger"] == "event"
                    && matches!(
                        run["state"].as_str(),
                        Some("succeeded" | "failed" | "timed_out" | "cancelled" | "lost")
                    )
            })
        },
    )
}

#[test]
fn an_uploaded_rds_runs_the_r_job_whose_csv_lands_in_the_output_bucket() {
    let server = Server::start();
    server.deploy(&repo_root().join("examples/summary-job"));
    server.s3_create_bucket("input");
    server.s3_create_bucket("output");
    // Another suffix does not match the trigger.
    server.s3_put("input", "notes.txt", b"not data".to_vec());
    let sample = std::fs::read(repo_root().join("examples/summary-job/data/sample.rds"))
        .expect("sample data");
    server.s3_put("input", "2026/sample.rds", sample);

    let run = finished_event_run(&server, "summary-job", Duration::from_secs(60));
    let id = run["id"].as_str().expect("id");
    assert_eq!(run["state"], "succeeded", "{run}\n{}", server.log_text(id));
    assert!(run["event_id"].is_string(), "{run}");
    let log = server.log_text(id);
    assert!(
        log.contains("sample.rds"),
        "the job read the staged file:\n{log}"
    );
    assert!(
        log.contains("Uploaded output summary.csv to s3://output/summary.csv"),
        "{log}"
    );

    let csv = String::from_utf8(
        server
            .s3_get("output", "summary.csv")
            .expect("summary.csv in output"),
    )
    .expect("utf-8");
    let rows: Vec<Vec<String>> = csv
        .lines()
        .map(|line| {
            line.split(',')
                .map(|cell| cell.trim_matches('"').to_owned())
                .collect()
        })
        .collect();
    assert_eq!(
        rows[0][..5],
        ["column", "n", "missing", "mean", "sd"],
        "{csv}"
    );
    assert_eq!(rows[1][0], "height");
    assert_eq!(rows[1][3].parse::<f64>().expect("mean"), 10.5, "{csv}");
    assert_eq!(rows[2][0], "weight");
    assert_eq!(rows[2][3].parse::<f64>().expect("mean"), 22.0, "{csv}");
    let correlation: f64 = rows[1].last().expect("cell").parse().expect("correlation");
    assert!((correlation - 1.0).abs() < 1e-9, "{csv}");

    // After success the input was renamed; the other object was left alone.
    let keys = server.s3_keys("input");
    assert!(!keys.contains(&"2026/sample.rds".to_owned()), "{keys:?}");
    assert!(
        keys.iter()
            .any(|key| key.starts_with("2026/sample.rds-used_2")),
        "archived as KEY-used_TIMESTAMP: {keys:?}"
    );
    assert!(keys.contains(&"notes.txt".to_owned()), "{keys:?}");
    // The archive rename did not start the job again, nor did notes.txt.
    assert_eq!(
        runs_of(&server, "summary-job")
            .iter()
            .filter(|run| run["trigger"] == "event")
            .count(),
        1
    );
}

/// A job that records what it was given: the event, the staged input and whether its
/// S3 key reaches its own buckets only (with boto3, from the host's Python, made visible
/// read-only in the sandbox).
#[test]
fn a_job_gets_the_event_the_staged_object_and_a_key_for_its_buckets_only() {
    let python = std::process::Command::new("python3")
        .args(["-c", "import sys, boto3; print(sys.executable)"])
        .output()
        .expect("python3 (scripts/install-deps.sh installs it)");
    assert!(
        python.status.success(),
        "boto3 is missing; install it with scripts/install-deps.sh: {}",
        String::from_utf8_lossy(&python.stderr)
    );
    let python = String::from_utf8(python.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    // The sandbox sees /usr; a Python elsewhere (pyenv) is made visible read-only.
    let binds = if python.starts_with("/usr/") {
        String::new()
    } else {
        let prefix = std::path::Path::new(&python)
            .ancestors()
            .nth(2)
            .expect("python prefix");
        format!("sandbox_ro_binds = [{:?}]\n", prefix.display().to_string())
    };
    let server = Server::start_with(&format!("kill_grace = \"1s\"\n{binds}"));
    let script = r#"
import json, os, boto3
out = os.environ["WHARF_OUTPUT_DIR"]
report = {
    "event": json.load(open(os.environ["WHARF_EVENT"])),
    "inputs": sorted(os.listdir(os.environ["WHARF_INPUT_DIR"])),
    "staged": open(os.environ["WHARF_INPUT_FILE"]).read(),
    "bucket": os.environ["WHARF_INPUT_BUCKET"],
    "key": os.environ["WHARF_INPUT_KEY"],
}
s3 = boto3.client("s3")
report["listed"] = [o["Key"] for o in s3.list_objects_v2(Bucket="incoming").get("Contents", [])]
s3.put_object(Bucket="results", Key="from-job.txt", Body=b"written by the job")
try:
    s3.list_objects_v2(Bucket="private")
    report["private"] = "allowed"
except Exception as error:
    report["private"] = getattr(error, "response", {}).get("Error", {}).get("Code", str(error))
json.dump(report, open(os.path.join(out, "report.json"), "w"))
"#;
    let manifest = format!(
        "name = \"inspect\"\nkind = \"job\"\ncommand = [{python:?}, \"report_job.py\"]\n\n\
         [[job.trigger]]\nobject_created = {{ bucket = \"incoming\", prefix = \"batch/\" }}\n\n\
         [job.io]\noutput_bucket = \"results\"\n"
    );
    let app = app_folder(&[("wharf.toml", &manifest), ("report_job.py", script)]);
    server.deploy(app.path());
    for bucket in ["incoming", "results", "private"] {
        server.s3_create_bucket(bucket);
    }
    server.s3_put("incoming", "elsewhere/ignored.csv", b"x".to_vec());
    server.s3_put("incoming", "batch/day 1/data.csv", b"a,b\n1,2\n".to_vec());

    let run = finished_event_run(&server, "inspect", Duration::from_secs(60));
    let id = run["id"].as_str().expect("id");
    assert_eq!(run["state"], "succeeded", "{run}\n{}", server.log_text(id));
    let report: Value = serde_json::from_slice(
        &server
            .s3_get("results", "report.json")
            .expect("report.json uploaded"),
    )
    .expect("report JSON");
    assert_eq!(report["event"]["source"], "wharf.s3", "{report}");
    assert_eq!(report["event"]["detail-type"], "Object Created");
    assert_eq!(
        report["event"]["detail"]["object"]["key"],
        "batch/day 1/data.csv"
    );
    assert_eq!(report["event"]["detail"]["object"]["size"], 8);
    assert_eq!(report["event"]["detail"]["reason"], "PutObject");
    assert!(report["event"]["detail"]["object"]["sequencer"].is_string());
    assert_eq!(report["inputs"], serde_json::json!(["data.csv"]));
    assert_eq!(report["staged"], "a,b\n1,2\n");
    assert_eq!(report["bucket"], "incoming");
    assert_eq!(report["key"], "batch/day 1/data.csv");
    assert_eq!(
        report["listed"],
        serde_json::json!(["batch/day 1/data.csv", "elsewhere/ignored.csv"])
    );
    assert_eq!(report["private"], "AccessDenied", "{report}");
    assert_eq!(
        server.s3_get("results", "from-job.txt").as_deref(),
        Some(&b"written by the job"[..])
    );
    // The run's key is gone once the run has ended.
    let spec = std::fs::read_to_string(server.data_dir().join("runs").join(id).join("spec.json"))
        .expect("spec");
    let spec: Value = serde_json::from_str(&spec).expect("spec JSON");
    let access_key = spec["env"]
        .as_array()
        .and_then(|env| {
            env.iter()
                .find(|pair| pair[0] == "AWS_ACCESS_KEY_ID")
                .and_then(|pair| pair[1].as_str())
        })
        .expect("AWS_ACCESS_KEY_ID in the run's environment")
        .to_owned();
    let db = server.data_dir().join("wharf.db");
    let remaining = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg(format!(
            "SELECT COUNT(*) FROM s3_keys WHERE access_key = '{access_key}'"
        ))
        .output();
    if let Ok(remaining) = remaining {
        if remaining.status.success() {
            assert_eq!(String::from_utf8_lossy(&remaining.stdout).trim(), "0");
        }
    }
}

#[test]
fn a_failed_run_puts_its_outputs_under_failed_and_keeps_its_input() {
    let server = Server::start();
    let manifest = "name = \"flaky\"\nkind = \"job\"\n\
        command = [\"sh\", \"-c\", \"echo partial > $WHARF_OUTPUT_DIR/part.txt; exit 3\"]\n\n\
        [[job.trigger]]\nobject_created = { bucket = \"inbox\" }\n\n\
        [job.io]\noutput_bucket = \"outbox\"\narchive_input = \"done/{key}\"\n";
    let app = app_folder(&[("wharf.toml", manifest)]);
    server.deploy(app.path());
    server.s3_create_bucket("inbox");
    server.s3_create_bucket("outbox");
    server.s3_put("inbox", "x.bin", b"payload".to_vec());
    let run = finished_event_run(&server, "flaky", Duration::from_secs(30));
    assert_eq!(run["state"], "failed", "{run}");
    assert_eq!(run["exit_code"], 3);
    assert_eq!(
        server.s3_get("outbox", "failed/part.txt").as_deref(),
        Some(&b"partial\n"[..])
    );
    assert_eq!(server.s3_get("outbox", "part.txt"), None);
    assert_eq!(
        server.s3_keys("inbox"),
        vec!["x.bin".to_owned()],
        "not archived after a failure"
    );
}

#[test]
fn an_input_deleted_before_its_run_starts_fails_the_run_with_a_clear_message() {
    let server = Server::start();
    // concurrency 1 and a first run that waits: the second upload's run stays queued.
    let manifest = "name = \"slow\"\nkind = \"job\"\n\
        command = [\"sh\", \"-c\", \"if [ \\\"$WHARF_INPUT_KEY\\\" = first ]; then while [ ! -e $TMPDIR/stop ]; do sleep 0.05; done; fi\"]\n\n\
        [job]\nconcurrency = 1\n\n[[job.trigger]]\nobject_created = { bucket = \"inbox\" }\n";
    let app = app_folder(&[("wharf.toml", manifest)]);
    server.deploy(app.path());
    server.s3_create_bucket("inbox");
    server.s3_put("inbox", "first", b"1".to_vec());
    let first = wait_for("the first run to start", Duration::from_secs(30), || {
        runs_of(&server, "slow")
            .into_iter()
            .find(|run| run["state"] == "running")
    });
    server.s3_put("inbox", "second", b"2".to_vec());
    wait_for(
        "the second run to be queued",
        Duration::from_secs(30),
        || (runs_of(&server, "slow").len() == 2).then_some(()),
    );
    let response = server
        .http()
        .delete(format!("{}/inbox/second", server.s3_url()))
        .bearer_auth(&server.token)
        .send()
        .expect("DELETE");
    assert!(response.status().is_success());
    let stop = server
        .data_dir()
        .join("runs")
        .join(first["id"].as_str().expect("id"))
        .join("work/tmp/stop");
    std::fs::write(stop, b"").expect("stop the first run");
    let second = wait_for("the second run to fail", Duration::from_secs(30), || {
        runs_of(&server, "slow")
            .into_iter()
            .find(|run| run["id"] != first["id"] && run["state"] == "failed")
    });
    let error = second["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("s3://inbox/second no longer exists"),
        "the run says which input is missing: {second}"
    );
}

#[test]
fn a_thousand_uploads_with_a_crash_in_the_middle_start_exactly_a_thousand_runs() {
    let mut server = Server::start_with("kill_grace = \"1s\"\nmax_concurrent_runs = 32\n");
    let manifest = "name = \"count\"\nkind = \"job\"\ncommand = [\"true\"]\n\n\
        [job]\nconcurrency = 32\n\n[[job.trigger]]\nobject_created = { bucket = \"drop\" }\n\n\
        [job.io]\nstage_input = false\n";
    let app = app_folder(&[("wharf.toml", manifest)]);
    server.deploy(app.path());
    server.s3_create_bucket("drop");
    const UPLOADS: usize = 1000;
    for index in 0..UPLOADS {
        if index == UPLOADS / 2 {
            // kill -9 while events are being dispatched and runs started.
            server.restart();
        }
        server.s3_put(
            "drop",
            &format!("file-{index:04}"),
            index.to_string().into_bytes(),
        );
    }
    let runs = wait_for(
        "every upload's run to end",
        Duration::from_secs(240),
        || {
            let runs = runs_of(&server, "count");
            let ended = runs
                .iter()
                .filter(|run| {
                    matches!(run["state"].as_str(), Some("succeeded" | "failed" | "lost"))
                })
                .count();
            (ended >= UPLOADS && runs.iter().all(|run| run["state"] != "queued")).then_some(runs)
        },
    );
    let first_attempts: Vec<&Value> = runs
        .iter()
        .filter(|run| run["trigger"] == "event")
        .collect();
    assert_eq!(first_attempts.len(), UPLOADS, "exactly one run per upload");
    let events: HashSet<&str> = first_attempts
        .iter()
        .map(|run| run["event_id"].as_str().expect("event id"))
        .collect();
    assert_eq!(events.len(), UPLOADS, "no event started two runs");
    let mut states: HashMap<String, usize> = HashMap::new();
    for run in &first_attempts {
        *states
            .entry(run["state"].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
    }
    assert_eq!(states.get("succeeded"), Some(&UPLOADS), "{states:?}");
}
