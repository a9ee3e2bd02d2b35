use std::path::PathBuf;

/// Everything that can go wrong while launching, watching or stopping a workload.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A file-system operation on a run folder failed.
    #[error("Could not {action} {}: {source}", path.display())]
    Io {
        /// What we were doing, as a verb phrase ("create the run folder").
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The launch spec cannot be run as given.
    #[error("Launch spec of {workload_id}: field `{field}` {problem}")]
    InvalidSpec {
        workload_id: String,
        field: &'static str,
        /// What is wrong and what to do, e.g. "is empty; give the program to run".
        problem: String,
    },

    /// The run folder already holds a launched workload.
    #[error(
        "Run folder {} was already used for a launch (it contains {}); use a fresh folder for every launch",
        run_dir.display(),
        crate::SPEC_FILE
    )]
    AlreadyLaunched { run_dir: PathBuf },

    /// The shim process could not be started.
    #[error("Could not start the shim {} for run folder {}: {source}; check the server's executable path", exe.display(), run_dir.display())]
    SpawnShim {
        exe: PathBuf,
        run_dir: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A file of the run folder exists but does not hold what it should.
    #[error("{}{}: {problem}", path.display(), line.map(|line| format!(":{line}")).unwrap_or_default())]
    CorruptFile {
        path: PathBuf,
        /// 1-based line for line-oriented files, if known.
        line: Option<u64>,
        problem: String,
    },

    /// A background thread that waited for the shim failed.
    #[error("Waiting for the shim of {} failed: {message}", run_dir.display())]
    Wait { run_dir: PathBuf, message: String },
}

impl RuntimeError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        RuntimeError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
