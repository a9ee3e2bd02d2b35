//! The standby shim: a shim started ahead of time that takes the next run over.

mod common;

use common::{runtime, texts, wait_until, Fixture};
use wharf_runtime::logs::STDOUT;
use wharf_runtime::{
    is_alive, request_stop, shim_pid, wait_for_exit, LocalRuntime, Sandbox, INPUT_DIR, WORK_DIR,
};

/// A runtime with a standby shim ready; returns the standby's pid.
async fn runtime_with_standby() -> (LocalRuntime, u32) {
    let runtime = runtime();
    runtime.warm_up();
    let mut standby = None;
    wait_until("a standby shim to be ready", || {
        standby = runtime.standby_pid();
        standby.is_some()
    })
    .await;
    (runtime, standby.unwrap())
}

/// "R (sleeping)", "Z", ... from /proc; `None` once the process is gone.
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

const WAIT_FOR_GO: &str =
    r#"echo started; while [ ! -e "$WHARF_INPUT_DIR/go" ]; do sleep 0.02; done; echo done"#;

async fn check_takes_the_next_run(sandbox: Sandbox) {
    let (runtime, standby) = runtime_with_standby().await;
    let fixture = Fixture::new();
    let launched = runtime
        .launch(&fixture.run_dir, &fixture.spec(sandbox, WAIT_FOR_GO))
        .await
        .unwrap();
    assert_eq!(launched.shim_pid, standby, "the standby took the run");
    // shim.pid and spec.json are there as soon as the launch returns.
    assert_eq!(shim_pid(&fixture.run_dir).unwrap(), standby);
    assert!(fixture.run_dir.join(wharf_runtime::SPEC_FILE).exists());
    fixture.wait_for_log_line(STDOUT, "started").await;
    assert!(is_alive(&fixture.run_dir).unwrap());
    // Its own session and process group, as a spawned shim.
    // SAFETY: getsid/getpgid have no requirements.
    let (session, group) = unsafe { (libc::getsid(standby as i32), libc::getpgid(standby as i32)) };
    assert_eq!((session, group), (standby as i32, standby as i32));
    // The next standby is another process.
    wait_until("the next standby shim", || {
        runtime.standby_pid().is_some_and(|next| next != standby)
    })
    .await;

    std::fs::write(
        fixture.run_dir.join(WORK_DIR).join(INPUT_DIR).join("go"),
        "",
    )
    .unwrap();
    let status = tokio::time::timeout(common::PATIENCE, wait_for_exit(&fixture.run_dir))
        .await
        .unwrap()
        .unwrap()
        .expect("a recorded status");
    assert!(status.success(), "{status:?}");
    assert_eq!(texts(&fixture.log(), STDOUT), ["started", "done"]);
}

#[tokio::test]
async fn a_standby_takes_the_next_run_plain() {
    check_takes_the_next_run(Sandbox::Off).await;
}

#[tokio::test]
async fn a_standby_takes_the_next_run_bubblewrap() {
    common::require_bubblewrap();
    check_takes_the_next_run(Sandbox::Bubblewrap).await;
}

#[tokio::test]
async fn a_run_taken_by_a_standby_can_be_cancelled() {
    let (runtime, standby) = runtime_with_standby().await;
    let fixture = Fixture::new();
    let spec = fixture.spec(Sandbox::Off, "echo started; exec sleep 3101");
    let launched = runtime.launch(&fixture.run_dir, &spec).await.unwrap();
    assert_eq!(launched.shim_pid, standby);
    fixture.wait_for_log_line(STDOUT, "started").await;
    assert!(request_stop(&fixture.run_dir).unwrap());
    let status = wait_for_exit(&fixture.run_dir).await.unwrap().unwrap();
    assert!(status.cancelled, "{status:?}");
    common::assert_all_gone(&["3101"]).await;
}

#[tokio::test]
async fn a_dead_standby_is_replaced_by_a_fresh_shim() {
    let (runtime, standby) = runtime_with_standby().await;
    // SAFETY: kill has no requirements; this is the standby we just started.
    unsafe { libc::kill(standby as i32, libc::SIGKILL) };
    wait_until("the standby to die", || {
        process_state(standby).is_none_or(|state| state == 'Z')
    })
    .await;
    let fixture = Fixture::new();
    let launched = runtime
        .launch(&fixture.run_dir, &fixture.spec(Sandbox::Off, "echo hello"))
        .await
        .unwrap();
    assert_ne!(launched.shim_pid, standby);
    let status = wait_for_exit(&fixture.run_dir).await.unwrap().unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(texts(&fixture.log(), STDOUT), ["hello"]);
    assert_eq!(shim_pid(&fixture.run_dir).unwrap(), launched.shim_pid);
}

#[tokio::test]
async fn a_standby_with_a_pending_stop_leaves_the_run_to_a_fresh_shim() {
    let (runtime, standby) = runtime_with_standby().await;
    // Blocked in the standby, so it stays pending: the run it would take must not inherit it.
    // SAFETY: kill has no requirements; this is the standby we just started.
    unsafe { libc::kill(standby as i32, libc::SIGTERM) };
    let fixture = Fixture::new();
    let launched = runtime
        .launch(&fixture.run_dir, &fixture.spec(Sandbox::Off, "echo hello"))
        .await
        .unwrap();
    assert_ne!(launched.shim_pid, standby);
    let status = wait_for_exit(&fixture.run_dir).await.unwrap().unwrap();
    assert!(status.success() && !status.cancelled, "{status:?}");
    assert_eq!(texts(&fixture.log(), STDOUT), ["hello"]);
    wait_until("the standby to exit", || {
        process_state(standby).is_none_or(|state| state == 'Z')
    })
    .await;
}

#[tokio::test]
async fn a_standby_exits_with_the_server() {
    let (runtime, standby) = runtime_with_standby().await;
    drop(runtime);
    wait_until("the standby to exit", || {
        process_state(standby).is_none_or(|state| state == 'Z')
    })
    .await;
}

/// The spare run folders in `runs`.
fn spares(runs: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(runs)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with(".spare-"))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn later_launches_use_a_spare_folder_but_never_replace_one() {
    let fixture = Fixture::new();
    let runs = fixture.run_dir.parent().unwrap().to_path_buf();
    let runtime = runtime();
    runtime
        .launch(&fixture.run_dir, &fixture.spec(Sandbox::Off, "echo one"))
        .await
        .unwrap();
    let status = wait_for_exit(&fixture.run_dir).await.unwrap().unwrap();
    assert!(status.success(), "{status:?}");
    wait_until("spare folders and a standby", || {
        spares(&runs).len() == 2 && runtime.standby_pid().is_some()
    })
    .await;
    let mut made = spares(&runs);
    made.sort();

    // A run folder with staged inputs is used as it is; the spares wait for the next ones.
    let staged = runs.join("run-2");
    std::fs::create_dir_all(staged.join(WORK_DIR).join(INPUT_DIR)).unwrap();
    std::fs::write(
        staged.join(WORK_DIR).join(INPUT_DIR).join("data.csv"),
        "7\n",
    )
    .unwrap();
    let spec = fixture.spec(Sandbox::Off, r#"cat "$WHARF_INPUT_DIR/data.csv""#);
    runtime.launch(&staged, &spec).await.unwrap();
    let status = wait_for_exit(&staged).await.unwrap().unwrap();
    assert!(status.success(), "{status:?}");
    let mut left = spares(&runs);
    left.sort();
    assert_eq!(left, made);

    // A new run folder is a spare, renamed.
    let fresh = runs.join("run-3");
    let launched = runtime
        .launch(
            &fresh,
            &fixture.spec(Sandbox::Off, r#"echo three; ls "$WHARF_OUTPUT_DIR""#),
        )
        .await
        .unwrap();
    assert_eq!(
        made.iter()
            .filter(|spare| spares(&runs).contains(spare))
            .count(),
        1,
        "one of the spares became the run folder"
    );
    let status = wait_for_exit(&fresh).await.unwrap().unwrap();
    assert!(status.success(), "{status:?}");
    let log = wharf_runtime::logs::read_lines(&fresh.join(wharf_runtime::LOG_FILE), 0, 100)
        .unwrap()
        .0;
    assert_eq!(texts(&log, STDOUT), ["three"]);
    assert_eq!(shim_pid(&fresh).unwrap(), launched.shim_pid);

    // Dropping the runtime removes its unused spares. Spares appear on disk just before
    // the refill hands them to the pool; one still in flight is removed when it lands.
    wait_until("the pool to be refilled", || spares(&runs).len() == 2).await;
    drop(runtime);
    wait_until("the spares to be removed", || spares(&runs).is_empty()).await;
}

#[tokio::test]
async fn a_standby_gets_large_specs_through_the_spec_file() {
    let (runtime, standby) = runtime_with_standby().await;
    let fixture = Fixture::new();
    let mut spec = fixture.spec(Sandbox::Off, r#"printf '%s\n' "${#BIG}""#);
    spec.env.push(("BIG".into(), "x".repeat(100_000)));
    let launched = runtime.launch(&fixture.run_dir, &spec).await.unwrap();
    assert_eq!(launched.shim_pid, standby);
    let status = wait_for_exit(&fixture.run_dir).await.unwrap().unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(texts(&fixture.log(), STDOUT), ["100000"]);
    assert!(fixture.run_dir.join(wharf_runtime::SPEC_FILE).exists());
}
