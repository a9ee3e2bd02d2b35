//! Workloads run through a real shim, with and without bubblewrap.

mod common;

use std::time::Duration;

use common::{assert_all_gone, require_bubblewrap, texts, Fixture};
use wharf_runtime::logs::{STDERR, STDOUT, WHARF};
use wharf_runtime::{read_exit_status, request_stop, Sandbox, OUTPUT_DIR, WORK_DIR};

// ---- output and exit codes --------------------------------------------------------------

async fn captures_output_and_success(sandbox: Sandbox) {
    let fixture = Fixture::new();
    let (status, log) = fixture
        .run(&fixture.spec(
            sandbox,
            "echo hi; echo oops >&2; printf 'a\\nb\\nc\\n'; exit 0",
        ))
        .await;
    assert!(status.success(), "{status:?}");
    assert_eq!(status.exit_code, Some(0));
    assert!(status
        .started_at
        .is_some_and(|started| started <= status.finished_at));
    assert_eq!(texts(&log, STDOUT), ["hi", "a", "b", "c"]);
    assert_eq!(texts(&log, STDERR), ["oops"]);
    assert!(texts(&log, WHARF).is_empty(), "{log:?}");
    // Timestamps: RFC 3339 UTC with microseconds, non-decreasing in file order.
    let times: Vec<chrono::DateTime<chrono::Utc>> = log
        .iter()
        .map(|line| {
            assert_eq!(
                line.t.len(),
                "2026-11-23T09:00:00.123456Z".len(),
                "{}",
                line.t
            );
            assert!(line.t.ends_with('Z'), "{}", line.t);
            line.t.parse().unwrap()
        })
        .collect();
    assert!(times.windows(2).all(|pair| pair[0] <= pair[1]), "{log:?}");
}

#[tokio::test]
async fn captures_output_and_success_plain() {
    captures_output_and_success(Sandbox::Off).await
}

#[tokio::test]
async fn captures_output_and_success_bubblewrap() {
    require_bubblewrap();
    captures_output_and_success(Sandbox::Bubblewrap).await
}

async fn records_exit_code(sandbox: Sandbox) {
    let fixture = Fixture::new();
    let (status, log) = fixture.run(&fixture.spec(sandbox, "exit 3")).await;
    assert_eq!(
        (status.exit_code, status.signal),
        (Some(3), None),
        "{status:?}"
    );
    assert!(!status.success() && !status.timed_out && !status.cancelled && status.error.is_none());
    assert_eq!(texts(&log, WHARF), ["Exited with code 3."]);
    assert_eq!(read_exit_status(&fixture.run_dir).unwrap(), Some(status));
}

#[tokio::test]
async fn records_exit_code_plain() {
    records_exit_code(Sandbox::Off).await
}

#[tokio::test]
async fn records_exit_code_bubblewrap() {
    require_bubblewrap();
    records_exit_code(Sandbox::Bubblewrap).await
}

#[tokio::test]
async fn records_killing_signal_plain() {
    let fixture = Fixture::new();
    let (status, log) = fixture.run(&fixture.spec(Sandbox::Off, "kill -9 $$")).await;
    assert_eq!(
        (status.exit_code, status.signal),
        (None, Some(9)),
        "{status:?}"
    );
    assert!(!status.success());
    assert_eq!(texts(&log, WHARF), ["Killed by signal 9 (SIGKILL)."]);
}

#[tokio::test]
async fn records_killing_signal_bubblewrap() {
    // bwrap reports a workload killed by signal N as exit code 128 + N.
    require_bubblewrap();
    let fixture = Fixture::new();
    let (status, _) = fixture
        .run(&fixture.spec(Sandbox::Bubblewrap, "kill -9 $$"))
        .await;
    assert_eq!(
        (status.exit_code, status.signal),
        (Some(137), None),
        "{status:?}"
    );
}

// ---- long lines and non-UTF-8 -------------------------------------------------------------

#[tokio::test]
async fn splits_long_lines_and_keeps_invalid_utf8_readable() {
    let fixture = Fixture::new();
    let script = "head -c 150000 /dev/zero | tr '\\000' a; echo; printf 'caf\\351\\n'; printf 'no newline at end'";
    let (status, log) = fixture.run(&fixture.spec(Sandbox::Off, script)).await;
    assert!(status.success(), "{status:?}");
    let lines = texts(&log, STDOUT);
    let lengths: Vec<usize> = lines.iter().map(String::len).collect();
    assert_eq!(
        lengths[..3],
        [65536, 65536, 150000 - 2 * 65536],
        "{lengths:?}"
    );
    assert!(lines[..3]
        .iter()
        .all(|line| line.bytes().all(|byte| byte == b'a')));
    assert_eq!(lines[3..], ["caf\u{fffd}", "no newline at end"]);
}

// ---- environment and sandbox --------------------------------------------------------------

const ENV_SCRIPT: &str = r#"
echo "in=$WHARF_INPUT_DIR"; echo "out=$WHARF_OUTPUT_DIR"; echo "tmp=$TMPDIR"; echo "home=$HOME"
echo "app=$WHARF_APP"; echo "path=$PATH"; echo "cwd=$(pwd)"
env | grep -c '^CARGO' | sed 's/^/cargo_vars=/'
sh job.sh
echo result > "$WHARF_OUTPUT_DIR/result.txt"
echo scratch > "$TMPDIR/scratch.txt" && echo tmp_writable
"#;

#[tokio::test]
async fn environment_without_sandbox() {
    let fixture = Fixture::new();
    let (status, log) = fixture.run(&fixture.spec(Sandbox::Off, ENV_SCRIPT)).await;
    assert!(status.success(), "{status:?} {log:?}");
    let work = fixture.run_dir.canonicalize().unwrap().join(WORK_DIR);
    let app = fixture.app_dir.canonicalize().unwrap();
    let expect = [
        format!("in={}", work.join("input").display()),
        format!("out={}", work.join("output").display()),
        format!("tmp={}", work.join("tmp").display()),
        format!("home={}", work.join("tmp").display()),
        "app=sales".to_string(),
        "path=/usr/local/bin:/usr/bin:/bin".to_string(),
        format!("cwd={}", app.display()),
        "cargo_vars=0".to_string(),
        "from the app".to_string(),
        "tmp_writable".to_string(),
    ];
    assert_eq!(texts(&log, STDOUT), expect);
    let output = fixture
        .run_dir
        .join(WORK_DIR)
        .join(OUTPUT_DIR)
        .join("result.txt");
    assert_eq!(std::fs::read_to_string(output).unwrap(), "result\n");
}

#[tokio::test]
async fn environment_in_sandbox() {
    require_bubblewrap();
    let fixture = Fixture::new();
    let script = format!(
        "{ENV_SCRIPT}
touch /app/new-file 2>/dev/null && echo app_writable || echo app_read_only
touch /usr/new-file 2>/dev/null && echo usr_writable || echo usr_read_only
test -e {root}/app/job.sh && echo host_visible || echo host_hidden
echo $$",
        root = fixture.root.path().display()
    );
    let (status, log) = fixture
        .run(&fixture.spec(Sandbox::Bubblewrap, &script))
        .await;
    assert!(status.success(), "{status:?} {log:?}");
    let expect = [
        "in=/work/input",
        "out=/work/output",
        "tmp=/work/tmp",
        "home=/work/tmp",
        "app=sales",
        "path=/usr/local/bin:/usr/bin:/bin",
        "cwd=/app",
        "cargo_vars=0",
        "from the app",
        "tmp_writable",
        "app_read_only",
        "usr_read_only",
        "host_hidden",
        // bwrap's init is PID 1 of the sandbox's own PID namespace, the workload PID 2.
        "2",
    ];
    assert_eq!(texts(&log, STDOUT), expect);
    let work = fixture.run_dir.join(WORK_DIR);
    assert_eq!(
        std::fs::read_to_string(work.join(OUTPUT_DIR).join("result.txt")).unwrap(),
        "result\n"
    );
    assert!(work.join("tmp").join("scratch.txt").exists());
    assert!(!fixture.app_dir.join("new-file").exists());
}

#[tokio::test]
async fn extra_read_only_binds_are_visible_in_sandbox() {
    require_bubblewrap();
    let fixture = Fixture::new();
    let library = fixture.root.path().join("r-library");
    std::fs::create_dir(&library).unwrap();
    std::fs::write(library.join("package.txt"), "dplyr\n").unwrap();
    let mut spec = fixture.spec(
        Sandbox::Bubblewrap,
        &format!(
            "cat {lib}/package.txt; touch {lib}/x 2>/dev/null || echo read_only",
            lib = library.display()
        ),
    );
    spec.extra_ro_binds = vec![library.clone()];
    let (status, log) = fixture.run(&spec).await;
    assert!(status.success(), "{status:?} {log:?}");
    assert_eq!(texts(&log, STDOUT), ["dplyr", "read_only"]);
}

// ---- program not found --------------------------------------------------------------------

#[tokio::test]
async fn program_not_found_without_sandbox() {
    let fixture = Fixture::new();
    let mut spec = fixture.spec(Sandbox::Off, "");
    spec.command = vec!["no-such-program-wharf".into(), "job.R".into()];
    let (status, log) = fixture.run(&spec).await;
    let error = status.error.clone().expect("an error");
    assert!(
        error.starts_with(
            "Failed to start: no-such-program-wharf: No such file or directory. Install it"
        ),
        "{error}"
    );
    assert_eq!(
        (status.exit_code, status.signal, status.started_at),
        (None, None, None)
    );
    assert!(!status.success());
    assert_eq!(texts(&log, WHARF), [error]);
}

#[tokio::test]
async fn program_not_found_in_sandbox() {
    require_bubblewrap();
    let fixture = Fixture::new();
    let mut spec = fixture.spec(Sandbox::Bubblewrap, "");
    spec.command = vec!["no-such-program-wharf".into()];
    let (status, log) = fixture.run(&spec).await;
    assert_eq!(status.exit_code, Some(1), "{status:?}");
    assert_eq!(
        texts(&log, STDERR),
        ["bwrap: execvp no-such-program-wharf: No such file or directory"]
    );
}

// ---- timeout ------------------------------------------------------------------------------

async fn timeout_kills_the_whole_tree(sandbox: Sandbox, markers: [&str; 2]) {
    let fixture = Fixture::new();
    let [background, foreground] = markers;
    let mut spec = fixture.spec(
        sandbox,
        &format!("sleep {background} & echo started; sleep {foreground}"),
    );
    spec.timeout = Some(Duration::from_millis(500));
    let (status, log) = fixture.run(&spec).await;
    assert!(
        status.timed_out && !status.cancelled && !status.success(),
        "{status:?}"
    );
    assert_eq!(texts(&log, STDOUT), ["started"]);
    assert_eq!(
        texts(&log, WHARF).first().map(String::as_str),
        Some("Timed out after 500ms; sending SIGTERM to the process group.")
    );
    assert_all_gone(&markers).await;
}

#[tokio::test]
async fn timeout_kills_the_whole_tree_plain() {
    timeout_kills_the_whole_tree(Sandbox::Off, ["1001", "1002"]).await
}

#[tokio::test]
async fn timeout_kills_the_whole_tree_bubblewrap() {
    require_bubblewrap();
    timeout_kills_the_whole_tree(Sandbox::Bubblewrap, ["2001", "2002"]).await
}

async fn timeout_escalates_to_sigkill(sandbox: Sandbox, marker: &str) {
    let fixture = Fixture::new();
    let mut spec = fixture.spec(
        sandbox,
        &format!("trap '' TERM; echo started; sleep {marker}"),
    );
    spec.timeout = Some(Duration::from_millis(300));
    spec.kill_grace = Duration::from_millis(300);
    let (status, log) = fixture.run(&spec).await;
    assert!(status.timed_out, "{status:?}");
    assert_eq!(status.signal, Some(libc::SIGKILL), "{status:?}");
    assert_eq!(
        texts(&log, WHARF)[..2],
        [
            "Timed out after 300ms; sending SIGTERM to the process group.",
            "Still running 300ms after SIGTERM; sending SIGKILL to the process group."
        ]
    );
    assert_all_gone(&[marker]).await;
}

#[tokio::test]
async fn timeout_escalates_to_sigkill_plain() {
    timeout_escalates_to_sigkill(Sandbox::Off, "1003").await
}

#[tokio::test]
async fn timeout_escalates_to_sigkill_bubblewrap() {
    require_bubblewrap();
    timeout_escalates_to_sigkill(Sandbox::Bubblewrap, "2003").await
}

// ---- cancel -------------------------------------------------------------------------------

async fn cancel_stops_the_whole_tree(sandbox: Sandbox, markers: [&str; 2]) {
    let fixture = Fixture::new();
    let [background, foreground] = markers;
    let spec = fixture.spec(
        sandbox,
        &format!("sleep {background} & echo started; sleep {foreground}"),
    );
    fixture.launch(&spec).await;
    fixture.wait_for_log_line(STDOUT, "started").await;
    common::wait_until("both sleeps to run", || {
        markers
            .iter()
            .all(|marker| !common::sleeps_with(marker).is_empty())
    })
    .await;
    assert!(request_stop(&fixture.run_dir).unwrap());
    let status = wharf_runtime::wait_for_exit(&fixture.run_dir)
        .await
        .unwrap()
        .unwrap();
    assert!(
        status.cancelled && !status.timed_out && !status.success(),
        "{status:?}"
    );
    assert_eq!(
        texts(&fixture.log(), WHARF).first().map(String::as_str),
        Some("Cancelled; sending SIGTERM to the process group.")
    );
    assert_all_gone(&markers).await;
    assert!(
        !request_stop(&fixture.run_dir).unwrap(),
        "a second stop finds nothing to stop"
    );
}

#[tokio::test]
async fn cancel_stops_the_whole_tree_plain() {
    cancel_stops_the_whole_tree(Sandbox::Off, ["1004", "1005"]).await
}

#[tokio::test]
async fn cancel_stops_the_whole_tree_bubblewrap() {
    require_bubblewrap();
    cancel_stops_the_whole_tree(Sandbox::Bubblewrap, ["2004", "2005"]).await
}

/// A workload that handles SIGTERM gets to shut down cleanly, also inside the sandbox
/// (where the outer bwrap process must not be the one to receive it).
async fn cancel_lets_the_workload_shut_down(sandbox: Sandbox, marker: &str) {
    let fixture = Fixture::new();
    let script = format!("trap 'echo got TERM; exit 7' TERM; sleep {marker} & echo started; wait");
    fixture.launch(&fixture.spec(sandbox, &script)).await;
    fixture.wait_for_log_line(STDOUT, "started").await;
    assert!(request_stop(&fixture.run_dir).unwrap());
    let status = wharf_runtime::wait_for_exit(&fixture.run_dir)
        .await
        .unwrap()
        .unwrap();
    assert!(status.cancelled, "{status:?}");
    assert_eq!(status.exit_code, Some(7), "{status:?}");
    assert_eq!(texts(&fixture.log(), STDOUT), ["started", "got TERM"]);
    assert_all_gone(&[marker]).await;
}

#[tokio::test]
async fn cancel_lets_the_workload_shut_down_plain() {
    cancel_lets_the_workload_shut_down(Sandbox::Off, "1006").await
}

#[tokio::test]
async fn cancel_lets_the_workload_shut_down_bubblewrap() {
    require_bubblewrap();
    cancel_lets_the_workload_shut_down(Sandbox::Bubblewrap, "2006").await
}

#[tokio::test]
async fn cancel_right_after_launch_is_not_lost() {
    let fixture = Fixture::new();
    fixture
        .launch(&fixture.spec(Sandbox::Off, "sleep 1007"))
        .await;
    // The shim may not even have installed its signal handling yet.
    assert!(request_stop(&fixture.run_dir).unwrap());
    let status = wharf_runtime::wait_for_exit(&fixture.run_dir)
        .await
        .unwrap()
        .unwrap();
    assert!(status.cancelled, "{status:?}");
    assert_all_gone(&["1007"]).await;
}

#[tokio::test]
async fn stragglers_are_killed_after_a_normal_exit() {
    let fixture = Fixture::new();
    let (status, log) = fixture
        .run(&fixture.spec(Sandbox::Off, "sleep 1008 & echo started"))
        .await;
    assert!(status.success(), "{status:?}");
    assert_eq!(
        texts(&log, WHARF),
        ["Stopping 1 process(es) the workload left running (SIGKILL to the process group)."]
    );
    assert_all_gone(&["1008"]).await;
}

#[tokio::test]
async fn output_held_open_outside_the_group_does_not_hang_the_shim() {
    // setsid puts the sleep outside the run's process group, holding stdout open.
    let fixture = Fixture::new();
    let (status, log) = fixture
        .run(&fixture.spec(
            Sandbox::Off,
            r#"setsid sh -c 'touch "$TMPDIR/escaped"; exec sleep 1009' &
            while [ ! -e "$TMPDIR/escaped" ]; do sleep 0.01; done; echo started"#,
        ))
        .await;
    assert!(status.success(), "{status:?}");
    assert!(
        texts(&log, WHARF)
            .iter()
            .any(|line| line.starts_with("Stopped reading output")),
        "{log:?}"
    );
    for pid in common::sleeps_with("1009") {
        // SAFETY: kill has no requirements. Clean up the escaped process.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
}
