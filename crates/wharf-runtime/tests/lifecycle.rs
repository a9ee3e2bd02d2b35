//! The shim's life: surviving the server, the liveness lock, launching rules.

mod common;

use std::io::BufRead;
use std::path::PathBuf;
use std::time::Duration;

use common::{assert_all_gone, runtime, texts, wait_until, Fixture};
use wharf_runtime::logs::STDOUT;
use wharf_runtime::{
    is_alive, read_exit_status, request_stop, shim_pid, wait_for_exit, RuntimeError, Sandbox,
    INPUT_DIR, SHIM_LOCK_FILE, SPEC_FILE, WORK_DIR,
};

const SERVER_RUN_DIR: &str = "WHARF_TEST_SERVER_RUN_DIR";
const SERVER_APP_DIR: &str = "WHARF_TEST_SERVER_APP_DIR";
/// Set: the helper server gives the run to a standby shim.
const SERVER_USES_STANDBY: &str = "WHARF_TEST_SERVER_USES_STANDBY";

/// Not a test by itself: when started by `shim_survives_the_server_being_killed` it plays a
/// server that launches a workload, reports the shim's pid, and waits to be killed.
#[tokio::test]
async fn survival_helper_server() {
    let (Ok(run_dir), Ok(app_dir)) = (std::env::var(SERVER_RUN_DIR), std::env::var(SERVER_APP_DIR))
    else {
        return;
    };
    let spec = wharf_runtime::LaunchSpec {
        workload_id: "run-survivor".into(),
        command: vec![
            "sh".into(),
            "-c".into(),
            r#"echo begin; while [ ! -e "$WHARF_INPUT_DIR/go" ]; do sleep 0.02; done; echo end"#
                .into(),
        ],
        env: vec![],
        app_dir: PathBuf::from(app_dir),
        sandbox: Sandbox::Off,
        timeout: None,
        kill_grace: Duration::from_secs(5),
        extra_ro_binds: vec![],
        secrets: None,
    };
    let runtime = runtime();
    if std::env::var_os(SERVER_USES_STANDBY).is_some() {
        runtime.warm_up();
        wait_until("a standby shim", || runtime.standby_pid().is_some()).await;
    }
    let standby = runtime.standby_pid();
    let launched = runtime
        .launch(std::path::Path::new(&run_dir), &spec)
        .await
        .unwrap();
    assert!(standby.is_none_or(|standby| standby == launched.shim_pid));
    println!("launched {}", launched.shim_pid);
    // Wait to be killed; should the test that started us fail first, go away with it.
    // SAFETY: getppid has no requirements.
    let parent = unsafe { libc::getppid() };
    while unsafe { libc::getppid() } == parent {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn stat_field(pid: u32, index_after_name: usize) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(index_after_name)?.parse().ok()
}

#[tokio::test]
async fn shim_survives_the_server_being_killed() {
    check_shim_survives_the_server_being_killed(false).await;
}

#[tokio::test]
async fn a_standby_shim_survives_the_server_being_killed() {
    check_shim_survives_the_server_being_killed(true).await;
}

async fn check_shim_survives_the_server_being_killed(standby: bool) {
    let fixture = Fixture::new();
    let mut server = std::process::Command::new(std::env::current_exe().unwrap());
    server
        .args([
            "survival_helper_server",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(SERVER_RUN_DIR, &fixture.run_dir)
        .env(SERVER_APP_DIR, &fixture.app_dir)
        .stdout(std::process::Stdio::piped());
    if standby {
        server.env(SERVER_USES_STANDBY, "1");
    }
    let mut server = server.spawn().unwrap();
    let stdout = server.stdout.take().unwrap();
    let reader = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            // libtest prints "test survival_helper_server ... " on the same line.
            .find_map(|line| {
                line.split_once("launched ")
                    .map(|(_, pid)| pid.trim().parse::<u32>().unwrap())
            })
            .expect("the helper server did not report a launch")
    });
    let shim = tokio::time::timeout(common::PATIENCE, reader)
        .await
        .expect("the helper server did not launch in time")
        .unwrap();
    fixture.wait_for_log_line(STDOUT, "begin").await;

    // The shim has its own session and process group, not the server's.
    // SAFETY: getsid/getpgid have no requirements.
    let (shim_session, shim_group, our_session) = unsafe {
        (
            libc::getsid(shim as i32),
            libc::getpgid(shim as i32),
            libc::getsid(0),
        )
    };
    assert_eq!(shim_session, shim as i32);
    assert_eq!(shim_group, shim as i32);
    assert_ne!(shim_session, our_session);
    assert_eq!(shim_pid(&fixture.run_dir).unwrap(), shim);

    // kill -9 the server.
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(
        is_alive(&fixture.run_dir).unwrap(),
        "the shim died with the server"
    );
    assert_ne!(
        stat_field(shim, 1),
        Some(i64::from(server.id())),
        "the shim still has the dead server as parent"
    );

    // A restarted server finds the run by its folder alone.
    let first_waiter = tokio::spawn(wait_for_exit(fixture.run_dir.clone().leak()));
    let second_waiter = tokio::spawn(wait_for_exit(fixture.run_dir.clone().leak()));
    assert!(!first_waiter.is_finished());
    std::fs::write(
        fixture.run_dir.join(WORK_DIR).join(INPUT_DIR).join("go"),
        "",
    )
    .unwrap();
    let status = first_waiter
        .await
        .unwrap()
        .unwrap()
        .expect("a recorded status");
    assert!(status.success(), "{status:?}");
    assert_eq!(second_waiter.await.unwrap().unwrap(), Some(status));
    assert!(!is_alive(&fixture.run_dir).unwrap());
    assert_eq!(texts(&fixture.log(), STDOUT), ["begin", "end"]);
}

#[tokio::test]
async fn a_killed_shim_is_seen_as_gone_and_takes_its_workload_along() {
    let fixture = Fixture::new();
    // Without sandbox only the direct child is tied to the shim (PR_SET_PDEATHSIG), so the
    // workload execs into the sleep here; the sandboxed variant below takes a whole tree.
    let launched = fixture
        .launch(&fixture.spec(Sandbox::Off, "echo started; exec sleep 1101"))
        .await;
    fixture.wait_for_log_line(STDOUT, "started").await;
    assert!(is_alive(&fixture.run_dir).unwrap());
    // SAFETY: kill has no requirements; this is the shim we just launched.
    unsafe { libc::kill(launched.shim_pid as i32, libc::SIGKILL) };
    // The workload must not have inherited the lock: it is released as the shim dies.
    assert_eq!(
        wait_for_exit(&fixture.run_dir).await.unwrap(),
        None,
        "lost: no status"
    );
    assert!(!is_alive(&fixture.run_dir).unwrap());
    assert_all_gone(&["1101"]).await;
}

#[tokio::test]
async fn a_killed_shim_takes_the_whole_sandbox_along() {
    common::require_bubblewrap();
    let fixture = Fixture::new();
    let launched = fixture
        .launch(&fixture.spec(Sandbox::Bubblewrap, "sleep 2101 & echo started; sleep 2102"))
        .await;
    fixture.wait_for_log_line(STDOUT, "started").await;
    // SAFETY: kill has no requirements; this is the shim we just launched.
    unsafe { libc::kill(launched.shim_pid as i32, libc::SIGKILL) };
    assert_eq!(
        wait_for_exit(&fixture.run_dir).await.unwrap(),
        None,
        "lost: no status"
    );
    assert_all_gone(&["2101", "2102"]).await;
}

#[tokio::test]
async fn is_alive_follows_the_shim() {
    let fixture = Fixture::new();
    fixture
        .launch(&fixture.spec(
            Sandbox::Off,
            r#"echo started; while [ ! -e "$WHARF_INPUT_DIR/go" ]; do sleep 0.02; done"#,
        ))
        .await;
    fixture.wait_for_log_line(STDOUT, "started").await;
    // Probing many times never disturbs the shim's lock.
    for _ in 0..50 {
        assert!(is_alive(&fixture.run_dir).unwrap());
    }
    assert_eq!(read_exit_status(&fixture.run_dir).unwrap(), None);
    std::fs::write(
        fixture.run_dir.join(WORK_DIR).join(INPUT_DIR).join("go"),
        "",
    )
    .unwrap();
    wait_until("the shim to exit", || !is_alive(&fixture.run_dir).unwrap()).await;
    assert!(read_exit_status(&fixture.run_dir)
        .unwrap()
        .unwrap()
        .success());
    assert!(!request_stop(&fixture.run_dir).unwrap());
}

#[tokio::test]
async fn never_launched_folders_read_as_gone() {
    let fixture = Fixture::new();
    for run_dir in [fixture.run_dir.clone(), fixture.root.path().to_path_buf()] {
        assert!(!is_alive(&run_dir).unwrap());
        assert_eq!(read_exit_status(&run_dir).unwrap(), None);
        assert_eq!(wait_for_exit(&run_dir).await.unwrap(), None);
        assert!(!request_stop(&run_dir).unwrap());
    }
}

#[tokio::test]
async fn inputs_staged_before_launch_are_kept() {
    let fixture = Fixture::new();
    let input = fixture.run_dir.join(WORK_DIR).join(INPUT_DIR);
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("data.csv"), "x\n1\n").unwrap();
    let (status, log) = fixture
        .run(&fixture.spec(Sandbox::Off, r#"cat "$WHARF_INPUT_DIR/data.csv""#))
        .await;
    assert!(status.success(), "{status:?}");
    assert_eq!(texts(&log, STDOUT), ["x", "1"]);
}

#[tokio::test]
async fn a_run_folder_is_launched_only_once() {
    let fixture = Fixture::new();
    let spec = fixture.spec(Sandbox::Off, "true");
    fixture.run(&spec).await;
    let error = runtime().launch(&fixture.run_dir, &spec).await.unwrap_err();
    assert!(
        matches!(error, RuntimeError::AlreadyLaunched { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("use a fresh folder"), "{error}");
}

#[tokio::test]
async fn invalid_specs_are_refused_before_anything_runs() {
    let check = |change: fn(&mut wharf_runtime::LaunchSpec, &Fixture), expect: &'static str| async move {
        let fixture = Fixture::new();
        let mut spec = fixture.spec(Sandbox::Off, "true");
        change(&mut spec, &fixture);
        let error = runtime()
            .launch(&fixture.run_dir, &spec)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(expect),
            "{error:?} should contain {expect:?}"
        );
        assert!(!fixture.run_dir.join(SPEC_FILE).exists());
        assert!(!fixture.run_dir.join(SHIM_LOCK_FILE).exists());
    };
    check(|spec, _| spec.command.clear(), "field `command` is empty").await;
    check(
        |spec, fixture| spec.app_dir = fixture.root.path().join("missing"),
        "field `app_dir`",
    )
    .await;
    check(
        |spec, fixture| {
            spec.sandbox = Sandbox::Bubblewrap;
            spec.extra_ro_binds = vec![fixture.root.path().join("no-library")];
        },
        "no-library is not an existing folder",
    )
    .await;
}

#[tokio::test]
async fn a_missing_shim_executable_is_a_clear_error() {
    let fixture = Fixture::new();
    let runtime = wharf_runtime::LocalRuntime::new(wharf_runtime::LocalRuntimeConfig {
        shim_exe: fixture.root.path().join("no-such-wharf"),
        shim_args: vec!["__shim".into()],
    });
    let error = runtime
        .launch(&fixture.run_dir, &fixture.spec(Sandbox::Off, "true"))
        .await
        .unwrap_err();
    assert!(matches!(error, RuntimeError::SpawnShim { .. }), "{error}");
    assert!(error.to_string().contains("no-such-wharf"), "{error}");
    // Nothing ran, so the folder can be launched again.
    let (status, _) = fixture.run(&fixture.spec(Sandbox::Off, "true")).await;
    assert!(status.success(), "{status:?}");
}
