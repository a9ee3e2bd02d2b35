//! Shared helpers for the integration tests: real shims, real processes, real bwrap.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wharf_runtime::logs::{read_lines, LogLine};
use wharf_runtime::{
    ExitStatus, LaunchSpec, Launched, LocalRuntime, LocalRuntimeConfig, Sandbox, LOG_FILE,
};

/// How long any polling wait may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub struct Fixture {
    pub root: tempfile::TempDir,
    pub app_dir: PathBuf,
    pub run_dir: PathBuf,
}

impl Fixture {
    pub fn new() -> Fixture {
        let root = tempfile::tempdir().unwrap();
        let app_dir = root.path().join("app");
        std::fs::create_dir(&app_dir).unwrap();
        std::fs::write(app_dir.join("job.sh"), "echo from the app\n").unwrap();
        let run_dir = root.path().join("runs").join("run-1");
        Fixture {
            root,
            app_dir,
            run_dir,
        }
    }

    pub fn spec(&self, sandbox: Sandbox, script: &str) -> LaunchSpec {
        LaunchSpec {
            workload_id: "run-1".into(),
            command: vec!["sh".into(), "-c".into(), script.into()],
            env: vec![("WHARF_APP".into(), "sales".into())],
            app_dir: self.app_dir.clone(),
            sandbox,
            timeout: None,
            kill_grace: Duration::from_secs(5),
            extra_ro_binds: vec![],
            secrets: None,
        }
    }

    pub async fn launch(&self, spec: &LaunchSpec) -> Launched {
        runtime().launch(&self.run_dir, spec).await.unwrap()
    }

    /// Launches and waits for the end; returns the status and the whole log.
    pub async fn run(&self, spec: &LaunchSpec) -> (ExitStatus, Vec<LogLine>) {
        self.launch(spec).await;
        let status = tokio::time::timeout(PATIENCE, wharf_runtime::wait_for_exit(&self.run_dir))
            .await
            .expect("the workload did not end in time")
            .unwrap()
            .expect("the shim wrote no status.json");
        (status, self.log())
    }

    pub fn log(&self) -> Vec<LogLine> {
        read_lines(&self.run_dir.join(LOG_FILE), 0, usize::MAX)
            .unwrap()
            .0
    }

    /// Waits until the log has a line from `stream` equal to `text`.
    pub async fn wait_for_log_line(&self, stream: &str, text: &str) {
        wait_until(&format!("log line {stream}: {text:?}"), || {
            self.log()
                .iter()
                .any(|line| line.s == stream && line.l == text)
        })
        .await
    }
}

pub fn runtime() -> LocalRuntime {
    LocalRuntime::new(LocalRuntimeConfig {
        shim_exe: PathBuf::from(env!("CARGO_BIN_EXE_wharf-runtime-shim")),
        shim_args: vec![],
    })
}

/// Polls `condition` until it holds, failing the test after [`PATIENCE`].
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Pids of live `sleep MARKER` processes (the marker makes them unique per test).
pub fn sleeps_with(marker: &str) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|&byte| byte == 0).collect();
        let is_sleep = args
            .first()
            .is_some_and(|program| program.ends_with(b"sleep"));
        if is_sleep && args.contains(&marker.as_bytes()) && !is_zombie(pid) {
            found.push(pid);
        }
    }
    found
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rfind(')')
                .map(|index| stat[index + 1..].trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// Waits until no `sleep MARKER` process is left, for each marker.
pub async fn assert_all_gone(markers: &[&str]) {
    for marker in markers {
        wait_until(&format!("every `sleep {marker}` to be gone"), || {
            sleeps_with(marker).is_empty()
        })
        .await;
    }
}

/// Fails (does not skip) when bubblewrap cannot be used here.
pub fn require_bubblewrap() {
    assert!(
        wharf_runtime::bubblewrap_available(),
        "bubblewrap (`bwrap`) is missing or cannot create a sandbox on this machine; install it with `apt-get install bubblewrap` (these tests never skip)"
    );
}

pub fn texts(log: &[LogLine], stream: &str) -> Vec<String> {
    log.iter()
        .filter(|line| line.s == stream)
        .map(|line| line.l.clone())
        .collect()
}

pub fn exists(path: &Path) -> bool {
    path.exists()
}
