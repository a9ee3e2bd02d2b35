use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::RuntimeError;

/// How the workload is isolated from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sandbox {
    /// In a bubblewrap sandbox: read-only `/usr`, `/etc` and app folder, a private `/tmp`,
    /// own PID/IPC/UTS namespaces, network shared with the host; writes only to `/work`.
    Bubblewrap,
    /// A plain process, as the server's user, in the app folder.
    Off,
}

/// What to run, and how. Written to `RUN/spec.json` by `launch`, read back by the shim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaunchSpec {
    /// The run id (or replica id), for messages.
    pub workload_id: String,
    /// The program and its arguments. The program is looked up on the workload's `PATH`.
    pub command: Vec<String>,
    /// The app's environment (`WHARF_APP`, `WHARF_RUN_ID`, `WHARF_PARAMS`, ...). The
    /// workload's environment is exactly this plus `PATH` (unless set here),
    /// `WHARF_INPUT_DIR`, `WHARF_OUTPUT_DIR`, `TMPDIR` and `HOME`.
    pub env: Vec<(String, String)>,
    /// The app version's folder: the working directory, read-only in the sandbox (`/app`).
    pub app_dir: PathBuf,
    pub sandbox: Sandbox,
    /// After this long the process group gets SIGTERM, then SIGKILL after `kill_grace`.
    pub timeout: Option<Duration>,
    /// How long to wait between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
    /// Extra host folders made visible read-only at the same path in the sandbox (an R
    /// library under /opt, for example). Ignored without sandbox.
    pub extra_ro_binds: Vec<PathBuf>,
    /// Variables whose values are secrets: kept sealed in `spec.json` and opened by the
    /// shim just before the workload starts, so no file holds them in the clear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<SealedEnv>,
}

/// Environment variables sealed with the server's key (`wharf_auth::SecretBox`).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct SealedEnv {
    /// The file holding the key (`DATA/secret.key`).
    pub key_file: PathBuf,
    /// (variable, sealed value).
    pub env: Vec<(String, String)>,
}

impl std::fmt::Debug for SealedEnv {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.env.iter().map(|(name, _)| name.as_str()).collect();
        formatter
            .debug_struct("SealedEnv")
            .field("key_file", &self.key_file)
            .field("variables", &names)
            .finish()
    }
}

impl SealedEnv {
    /// The variables with their values opened.
    pub fn open(&self) -> Result<Vec<(String, String)>, String> {
        let secret_box =
            wharf_auth::SecretBox::load(&self.key_file).map_err(|error| error.to_string())?;
        self.env
            .iter()
            .map(|(name, sealed)| {
                secret_box
                    .open(sealed)
                    .map(|value| (name.clone(), value))
                    .map_err(|error| format!("the secret for {name} could not be opened: {error}"))
            })
            .collect()
    }
}

impl LaunchSpec {
    /// Checks what can be checked without touching the file system.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        let invalid = |field, problem: &str| {
            Err(RuntimeError::InvalidSpec {
                workload_id: self.workload_id.clone(),
                field,
                problem: problem.to_string(),
            })
        };
        match self.command.first() {
            None => return invalid("command", "is empty; give the program to run"),
            Some(program) if program.is_empty() => {
                return invalid(
                    "command",
                    "starts with an empty program name; give the program to run",
                )
            }
            Some(_) => {}
        }
        if self.command.iter().any(|argument| argument.contains('\0')) {
            return invalid("command", "contains a NUL byte; remove it");
        }
        let secret_names = self
            .secrets
            .iter()
            .flat_map(|secrets| secrets.env.iter().map(|(name, _)| (name, "")));
        for (name, value) in self
            .env
            .iter()
            .map(|(name, value)| (name, value.as_str()))
            .chain(secret_names)
        {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                return invalid(
                    "env",
                    &format!("has the invalid variable name {name:?}; names must be non-empty, without '=' or NUL"),
                );
            }
            if value.contains('\0') {
                return invalid(
                    "env",
                    &format!("variable {name} contains a NUL byte; remove it"),
                );
            }
        }
        if !self.app_dir.is_absolute() {
            return invalid(
                "app_dir",
                &format!(
                    "{} is not an absolute path; give an absolute path",
                    self.app_dir.display()
                ),
            );
        }
        for bind in &self.extra_ro_binds {
            if !bind.is_absolute() {
                return invalid(
                    "extra_ro_binds",
                    &format!(
                        "{} is not an absolute path; give an absolute path",
                        bind.display()
                    ),
                );
            }
        }
        if self.timeout == Some(Duration::ZERO) {
            return invalid("timeout", "is zero; give a positive duration or none");
        }
        Ok(())
    }
}

/// How a workload ended. Written once, atomically, to `RUN/status.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// The exit code of the main process, if it exited normally. Under bubblewrap a
    /// workload killed by signal N shows as code 128+N (bwrap reports it that way).
    pub exit_code: Option<i32>,
    /// The signal that killed the main process, if any.
    pub signal: Option<i32>,
    /// The timeout fired and the workload was terminated.
    pub timed_out: bool,
    /// The workload was stopped on request (SIGTERM to the shim).
    pub cancelled: bool,
    /// When the workload was spawned; `None` if it never started.
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: DateTime<Utc>,
    /// Why the workload could not be run at all (for example the program was not found).
    pub error: Option<String>,
}

impl ExitStatus {
    /// Exited by itself with code 0.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
            && self.signal.is_none()
            && !self.timed_out
            && !self.cancelled
            && self.error.is_none()
    }
}

#[cfg(test)]
mod tests {
    use crate::{ExitStatus, LaunchSpec, Sandbox, SealedEnv};
    use std::path::PathBuf;
    use std::time::Duration;

    fn spec() -> LaunchSpec {
        LaunchSpec {
            workload_id: "run-1".into(),
            command: vec!["Rscript".into(), "job.R".into()],
            env: vec![("WHARF_APP".into(), "sales".into())],
            app_dir: PathBuf::from("/srv/apps/sales/1"),
            sandbox: Sandbox::Off,
            timeout: Some(Duration::from_secs(10)),
            kill_grace: Duration::from_secs(5),
            extra_ro_binds: vec![],
            secrets: None,
        }
    }

    fn check(change: impl FnOnce(&mut LaunchSpec), expect_error: Option<&str>) {
        let mut spec = spec();
        change(&mut spec);
        match (spec.validate(), expect_error) {
            (Ok(()), None) => {}
            (Err(error), Some(expected)) => {
                let text = error.to_string();
                assert!(
                    text.contains(expected),
                    "{text:?} should contain {expected:?}"
                )
            }
            (result, expected) => panic!("got {result:?}, expected error {expected:?}"),
        }
    }

    #[test]
    fn validate() {
        check(|_| {}, None);
        check(|spec| spec.timeout = None, None);
        check(
            |spec| spec.command.clear(),
            Some("field `command` is empty"),
        );
        check(|spec| spec.command[0].clear(), Some("empty program name"));
        check(|spec| spec.command.push("a\0b".into()), Some("NUL"));
        check(
            |spec| spec.env.push(("A=B".into(), "x".into())),
            Some("invalid variable name \"A=B\""),
        );
        check(
            |spec| spec.env.push((String::new(), "x".into())),
            Some("invalid variable name"),
        );
        check(
            |spec| spec.env.push(("A".into(), "x\0".into())),
            Some("variable A contains a NUL"),
        );
        check(
            |spec| spec.app_dir = "apps/1".into(),
            Some("apps/1 is not an absolute path"),
        );
        check(
            |spec| spec.extra_ro_binds.push("opt".into()),
            Some("`extra_ro_binds` opt is not"),
        );
        check(
            |spec| spec.timeout = Some(Duration::ZERO),
            Some("`timeout` is zero"),
        );
    }

    #[test]
    fn success_needs_code_zero_and_nothing_else() {
        let base = ExitStatus {
            exit_code: Some(0),
            signal: None,
            timed_out: false,
            cancelled: false,
            started_at: None,
            finished_at: chrono::Utc::now(),
            error: None,
        };
        let cases: Vec<(ExitStatus, bool)> = vec![
            (base.clone(), true),
            (
                ExitStatus {
                    exit_code: Some(3),
                    ..base.clone()
                },
                false,
            ),
            (
                ExitStatus {
                    exit_code: None,
                    signal: Some(9),
                    ..base.clone()
                },
                false,
            ),
            (
                ExitStatus {
                    timed_out: true,
                    ..base.clone()
                },
                false,
            ),
            (
                ExitStatus {
                    cancelled: true,
                    ..base.clone()
                },
                false,
            ),
            (
                ExitStatus {
                    exit_code: None,
                    error: Some("x".into()),
                    ..base.clone()
                },
                false,
            ),
        ];
        for (status, expected) in cases {
            assert_eq!(status.success(), expected, "{status:?}");
        }
    }

    #[test]
    fn spec_round_trips_through_json() {
        let spec = spec();
        let json = serde_json::to_string(&spec).unwrap();
        assert!(json.contains("\"sandbox\":\"off\""), "{json}");
        assert_eq!(serde_json::from_str::<LaunchSpec>(&json).unwrap(), spec);
    }

    #[test]
    fn sealed_variables_open_only_with_the_key_and_never_print() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("secret.key");
        let secret_box = wharf_auth::SecretBox::load_or_create(&key_file).unwrap();
        let sealed = SealedEnv {
            key_file: key_file.clone(),
            env: vec![("DB_PASSWORD".into(), secret_box.seal("hunter2-hunter2"))],
        };
        assert_eq!(
            sealed.open().unwrap(),
            vec![("DB_PASSWORD".to_string(), "hunter2-hunter2".to_string())]
        );
        let mut spec = spec();
        spec.secrets = Some(sealed.clone());
        let json = serde_json::to_string(&spec).unwrap();
        assert!(!json.contains("hunter2"), "{json}");
        assert!(!format!("{spec:?}").contains("hunter2"));
        assert_eq!(serde_json::from_str::<LaunchSpec>(&json).unwrap(), spec);

        // Another key, or none, opens nothing and says which variable failed.
        std::fs::write(&key_file, [9u8; 32]).unwrap();
        let error = sealed.open().unwrap_err();
        assert!(
            error.contains("the secret for DB_PASSWORD could not be opened"),
            "{error}"
        );
        std::fs::remove_file(&key_file).unwrap();
        assert!(sealed.open().unwrap_err().contains("secret.key"));

        // A sealed variable's name is checked like any other.
        check(
            |spec| {
                spec.secrets = Some(SealedEnv {
                    key_file: PathBuf::from("/k"),
                    env: vec![("A=B".into(), "v1:00".into())],
                })
            },
            Some("invalid variable name"),
        );
    }
}
