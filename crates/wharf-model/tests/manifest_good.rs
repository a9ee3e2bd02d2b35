//! Manifests that must load, and what they load to.

use std::collections::BTreeMap;
use std::time::Duration;

use wharf_model::manifest::infer::{PLUMBER_EXPRESSION, SHINY_EXPRESSION};
use wharf_model::manifest::{
    load_manifest, AppKind, EnvValue, JobIo, JobSettings, Manifest, Overlap, ServiceSettings,
    Trigger,
};

/// The full example from BLUEPRINT.md ("Manifest"), verbatim.
const BLUEPRINT_EXAMPLE: &str = r#"name = "btc-report"            # [a-z0-9-]{1,63}
kind = "job"                    # job | service; inferred when absent: plumber.R → service,
                                #   app.R / server.R → service (sticky), else a single *.R / main.py → job
command = ["Rscript", "report.R"]   # argv, never a shell string
runtime = "local"               # default from server config

[env]
LOG_LEVEL = "info"
SLACK_TOKEN = { secret = "slack" }

[job]
timeout = "10m"
retries = 2                     # exponential backoff
concurrency = 1
overlap = "queue"               # queue | skip when a trigger fires at the concurrency limit

[[job.trigger]]
schedule = "0 * * * *"
timezone = "Europe/Vienna"

[[job.trigger]]
object_created = { bucket = "input", suffix = ".rds" }   # sugar for a pattern
# pattern = '{"source":["wharf.s3"],"detail":{"bucket":{"name":["input"]}}}'

[job.io]
stage_input = true              # triggering object downloaded into $WHARF_INPUT_DIR
output_bucket = "output"        # files written to $WHARF_OUTPUT_DIR are uploaded here
archive_input = "{key}-used_{timestamp}"   # rename the input after success

[service]
health = "/"
min_replicas = 1
max_replicas = 5
scale_out_above = 15            # concurrent sessions per replica
scale_in_below = 3
sticky = true
idle_timeout = "15m"            # min_replicas = 0 → scale to zero after this
max_inflight = 0                # per replica; beyond → wait up to queue timeout, then 429
access = "logged-in"            # public | logged-in | groups = ["analysts"]
"#;

fn files(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| name.to_string()).collect()
}

fn strings(arguments: &[&str]) -> Vec<String> {
    arguments
        .iter()
        .map(|argument| argument.to_string())
        .collect()
}

fn load(text: &str, names: &[&str]) -> Manifest {
    match load_manifest("wharf.toml", Some(text), &files(names)) {
        Ok(manifest) => manifest,
        Err(errors) => panic!("expected a valid manifest:\n{text}\nerrors:\n{errors}"),
    }
}

fn job(command: &[&str]) -> Manifest {
    Manifest {
        name: None,
        kind: AppKind::Job,
        command: strings(command),
        runtime: None,
        env: BTreeMap::new(),
        job: JobSettings::default(),
        service: ServiceSettings::default(),
        notify: Vec::new(),
    }
}

/// Loads `text` and checks it against `expected` and a serde_json round trip.
fn check(text: &str, names: &[&str], expected: Manifest) {
    let manifest = load(text, names);
    assert_eq!(manifest, expected, "{text}");
    check_round_trip(&manifest);
}

fn check_round_trip(manifest: &Manifest) {
    let json = serde_json::to_string(manifest).unwrap();
    let back: Manifest = serde_json::from_str(&json).unwrap();
    assert_eq!(&back, manifest, "{json}");
    let pretty = serde_json::to_string_pretty(manifest).unwrap();
    assert_eq!(
        serde_json::from_str::<Manifest>(&pretty).unwrap(),
        *manifest
    );
}

#[test]
fn blueprint_example() {
    let manifest = load(BLUEPRINT_EXAMPLE, &["report.R"]);
    let expected = Manifest {
        name: Some("btc-report".to_string()),
        kind: AppKind::Job,
        command: strings(&["Rscript", "report.R"]),
        runtime: Some("local".to_string()),
        env: BTreeMap::from([
            ("LOG_LEVEL".to_string(), EnvValue::Plain("info".to_string())),
            (
                "SLACK_TOKEN".to_string(),
                EnvValue::Secret {
                    secret: "slack".to_string(),
                },
            ),
        ]),
        job: JobSettings {
            timeout: Some(Duration::from_secs(600)),
            retries: 2,
            retry_backoff: Duration::from_secs(10),
            concurrency: 1,
            overlap: Overlap::Queue,
            triggers: vec![
                Trigger::Schedule {
                    schedule: "0 * * * *".to_string(),
                    timezone: Some("Europe/Vienna".to_string()),
                    catch_up: None,
                },
                Trigger::ObjectCreated {
                    bucket: "input".to_string(),
                    prefix: None,
                    suffix: Some(".rds".to_string()),
                },
            ],
            io: JobIo {
                stage_input: true,
                output_bucket: Some("output".to_string()),
                archive_input: Some("{key}-used_{timestamp}".to_string()),
            },
        },
        service: ServiceSettings {
            health: "/".to_string(),
            min_replicas: 1,
            max_replicas: 5,
            scale_out_above: 15,
            scale_in_below: 3,
            sticky: true,
            idle_timeout: Some(Duration::from_secs(900)),
            max_inflight: 0,
            access: "logged-in".to_string(),
            ..ServiceSettings::default()
        },
        notify: Vec::new(),
    };
    assert_eq!(manifest, expected);
    check_round_trip(&manifest);
    // Without any files the explicit kind and command are used as written.
    assert_eq!(load(BLUEPRINT_EXAMPLE, &[]), expected);
}

#[test]
fn defaults() {
    let settings = JobSettings::default();
    assert_eq!(settings.retries, 0);
    assert_eq!(settings.retry_backoff, Duration::from_secs(10));
    assert_eq!(settings.concurrency, 1);
    assert_eq!(settings.overlap, Overlap::Queue);
    assert!(settings.io.stage_input);
    let service = ServiceSettings::default();
    assert_eq!(service.health, "/");
    assert_eq!(
        (
            service.min_replicas,
            service.max_replicas,
            service.scale_out_above,
            service.scale_in_below
        ),
        (1, 5, 15, 3)
    );
    assert_eq!(service.access, "logged-in");
    assert!(!service.sticky);
}

#[test]
fn good_manifests() {
    check(
        r#"command = ["Rscript", "job.R"]"#,
        &[],
        job(&["Rscript", "job.R"]),
    );
    check(
        "name = \"a\"\nkind = \"job\"\ncommand = [\"python3\", \"-u\", \"main.py\", \"\"]\n",
        &[],
        Manifest {
            name: Some("a".to_string()),
            ..job(&["python3", "-u", "main.py", ""])
        },
    );
    check(
        r#"
command = ["Rscript", "job.R"]

[job]
timeout = "1h30m"
retries = 100
retry_backoff = "500ms"
concurrency = 1000
overlap = "skip"

[[job.trigger]]
schedule = "H/15 * * * *"
catch_up = "all"

[[job.trigger]]
schedule = "30 15 6 * * MON-FRI"
timezone = "UTC"
catch_up = "none"

[[job.trigger]]
object_created = { bucket = "input", prefix = "incoming/", suffix = ".csv" }

[[job.trigger]]
pattern = '{"source": ["wharf.s3"], "detail": {"bucket": {"name": ["input"]}}}'

[job.io]
stage_input = false
"#,
        &[],
        Manifest {
            job: JobSettings {
                timeout: Some(Duration::from_secs(5400)),
                retries: 100,
                retry_backoff: Duration::from_millis(500),
                concurrency: 1000,
                overlap: Overlap::Skip,
                triggers: vec![
                    Trigger::Schedule {
                        schedule: "H/15 * * * *".to_string(),
                        timezone: None,
                        catch_up: Some("all".to_string()),
                    },
                    Trigger::Schedule {
                        schedule: "30 15 6 * * MON-FRI".to_string(),
                        timezone: Some("UTC".to_string()),
                        catch_up: Some("none".to_string()),
                    },
                    Trigger::ObjectCreated {
                        bucket: "input".to_string(),
                        prefix: Some("incoming/".to_string()),
                        suffix: Some(".csv".to_string()),
                    },
                    Trigger::Pattern {
                        pattern:
                            r#"{"source": ["wharf.s3"], "detail": {"bucket": {"name": ["input"]}}}"#
                                .to_string(),
                    },
                ],
                io: JobIo {
                    stage_input: false,
                    output_bucket: None,
                    archive_input: None,
                },
            },
            ..job(&["Rscript", "job.R"])
        },
    );
    // Inline tables and dotted keys are the same TOML.
    check(
        r#"
command = ["Rscript", "job.R"]
job.retries = 3
job.trigger = [{ schedule = "@daily" }]
env = { A = "1", B = { secret = "b" } }
"#,
        &[],
        Manifest {
            env: BTreeMap::from([
                ("A".to_string(), EnvValue::Plain("1".to_string())),
                (
                    "B".to_string(),
                    EnvValue::Secret {
                        secret: "b".to_string(),
                    },
                ),
            ]),
            job: JobSettings {
                retries: 3,
                triggers: vec![Trigger::Schedule {
                    schedule: "@daily".to_string(),
                    timezone: None,
                    catch_up: None,
                }],
                ..JobSettings::default()
            },
            ..job(&["Rscript", "job.R"])
        },
    );
    check(
        r#"
kind = "service"
command = ["python3", "-m", "uvicorn", "api:app"]

[service]
health = "/healthz"
min_replicas = 0
max_replicas = 1
scale_out_above = 1
scale_in_below = 0
idle_timeout = "15m"
max_inflight = 4
access = "public"
"#,
        &[],
        Manifest {
            kind: AppKind::Service,
            service: ServiceSettings {
                health: "/healthz".to_string(),
                min_replicas: 0,
                max_replicas: 1,
                scale_out_above: 1,
                scale_in_below: 0,
                sticky: false,
                idle_timeout: Some(Duration::from_secs(900)),
                max_inflight: 4,
                access: "public".to_string(),
                ..ServiceSettings::default()
            },
            ..job(&["python3", "-m", "uvicorn", "api:app"])
        },
    );
}

fn service(command: &[&str], sticky: bool) -> Manifest {
    Manifest {
        kind: AppKind::Service,
        service: ServiceSettings {
            sticky,
            ..ServiceSettings::default()
        },
        ..job(command)
    }
}

#[test]
fn inference() {
    let plumber = ["Rscript", "-e", PLUMBER_EXPRESSION];
    let shiny = ["Rscript", "-e", SHINY_EXPRESSION];
    // No wharf.toml at all.
    let check_bare = |names: &[&str], expected: Manifest| {
        let manifest = load_manifest("my-app/wharf.toml", None, &files(names)).unwrap();
        assert_eq!(manifest, expected, "{names:?}");
        check_round_trip(&manifest);
    };
    check_bare(&["plumber.R", "data.csv"], service(&plumber, false));
    check_bare(&["app.R"], service(&shiny, true));
    check_bare(
        &["server.R", "ui.R", "www/style.css"],
        service(&shiny, true),
    );
    check_bare(&["main.py", "helpers.py"], job(&["python3", "main.py"]));
    check_bare(&["report.R", "R/utils.R"], job(&["Rscript", "report.R"]));

    // A wharf.toml without kind and command.
    check(
        "name = \"api\"\n",
        &["plumber.R"],
        Manifest {
            name: Some("api".to_string()),
            ..service(&plumber, false)
        },
    );
    check("", &["etl.R"], job(&["Rscript", "etl.R"]));
    // Kind given: only that kind's rules.
    check(
        "kind = \"job\"\n",
        &["plumber.R"],
        job(&["Rscript", "plumber.R"]),
    );
    check(
        "kind = \"job\"\n",
        &["app.R", "main.py"],
        job(&["python3", "main.py"]),
    );
    check(
        "kind = \"service\"\n",
        &["app.R", "main.py"],
        service(&shiny, true),
    );
    // An explicit sticky wins over the Shiny default.
    check(
        "kind = \"service\"\n[service]\nsticky = false\n",
        &["app.R"],
        service(&shiny, false),
    );
    // Command given, kind inferred from the files (a job when nothing matches).
    check(
        "command = [\"Rscript\", \"run.R\"]\n",
        &["app.R", "run.R"],
        service(&["Rscript", "run.R"], true),
    );
    check(
        "command = [\"bash\", \"run.sh\"]\n",
        &["run.sh", "a.R", "b.R"],
        job(&["bash", "run.sh"]),
    );
}

#[test]
fn stored_json_is_readable_and_tolerant() {
    let manifest = load(
        "command = [\"Rscript\", \"job.R\"]\n[job]\ntimeout = \"1h30m\"\n[[job.trigger]]\nschedule = \"0 * * * *\"\n",
        &[],
    );
    let json = serde_json::to_value(&manifest).unwrap();
    assert_eq!(json["job"]["timeout"], "1h30m");
    assert_eq!(json["job"]["retry_backoff"], "10s");
    assert_eq!(json["job"]["triggers"][0]["type"], "schedule");
    assert_eq!(json["kind"], "job");
    // Older rows without newer sections still load, with defaults; milliseconds are accepted.
    let minimal: Manifest = serde_json::from_str(
        r#"{"kind": "job", "command": ["Rscript", "job.R"], "job": {"timeout": 60000}}"#,
    )
    .unwrap();
    assert_eq!(minimal.job.timeout, Some(Duration::from_secs(60)));
    assert_eq!(minimal.service, ServiceSettings::default());
    assert_eq!(minimal.job.retry_backoff, Duration::from_secs(10));
    // Sub-millisecond durations survive the round trip too.
    let mut precise = job(&["x"]);
    precise.job.timeout = Some(Duration::new(1, 2_003));
    check_round_trip(&precise);
}

#[test]
fn notify_rules() {
    use wharf_model::notify::{NotifyEvent, NotifyRule};
    let manifest = load(
        r#"
command = ["Rscript", "job.R"]

[[notify]]
channel = "team-slack"
on = ["failure", "timeout", "fixed", "failure"]

[[notify]]
channel = "mail"

[[notify]]
channel = "ops.hook"
on = ["success"]
"#,
        &[],
    );
    assert_eq!(
        manifest.notify,
        vec![
            NotifyRule {
                channel: "team-slack".to_string(),
                on: vec![
                    NotifyEvent::Failure,
                    NotifyEvent::Timeout,
                    NotifyEvent::Fixed
                ],
            },
            NotifyRule {
                channel: "mail".to_string(),
                on: vec![NotifyEvent::Failure, NotifyEvent::Fixed],
            },
            NotifyRule {
                channel: "ops.hook".to_string(),
                on: vec![NotifyEvent::Success],
            },
        ]
    );
    check_round_trip(&manifest);
    let inline = load(
        "command = [\"Rscript\", \"job.R\"]\nnotify = [{ channel = \"a\", on = [\"success\"] }]\n",
        &[],
    );
    assert_eq!(inline.notify.len(), 1);
}
