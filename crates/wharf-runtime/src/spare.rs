//! Spare run folders: the layout of a run folder made ahead of time, next to the run
//! folders, so that a launch renames one folder instead of creating five folders and four
//! files (each a journal transaction; on a busy disk each can take a millisecond).
//!
//! A spare is `RUNS/.spare-TOKEN-N` with `work/{input,output,tmp}`, an empty `shim.log`
//! and `shim.lock`, already locked by the server (the lock belongs to the open file, so it
//! stays held across the rename). It has no `log.jsonl`: the shim makes it right before it
//! starts the workload, so its absence tells a restarted server the workload never ran. A launch writes `spec.json` into it and
//! renames it to the run folder without replacing anything (`RENAME_NOREPLACE`); a run
//! folder that already exists (inputs staged before the launch) is prepared the usual way.
//!
//! Unused spares are removed when the runtime is dropped; those of a server that died (their
//! lock is free) are removed by the next server that makes one in the same folder.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::lock::{self, TryLock};
use crate::{INPUT_DIR, OUTPUT_DIR, SHIM_LOCK_FILE, SHIM_LOG_FILE, SPEC_FILE, TMP_DIR, WORK_DIR};

const SPARE_PREFIX: &str = ".spare-";

/// A spare run folder, owned until it is claimed or dropped.
pub(crate) struct SpareRunDir {
    /// The folder holding the run folders, as launches name it.
    parent: PathBuf,
    /// The spare itself, absolute and free of links; removed when dropped unclaimed.
    folder: RemovedOnDrop,
    /// `shim.lock`, locked.
    lock: File,
    /// `shim.log`, open for appending.
    shim_log: File,
}

/// A run folder made from a spare.
pub(crate) struct ClaimedRunDir {
    /// Absolute and free of links.
    pub(crate) run_dir: PathBuf,
    /// Its `shim.lock`, locked.
    pub(crate) lock: File,
    /// Its `shim.log`, open for appending.
    pub(crate) shim_log: File,
}

/// A name no other process uses: this process's random token and a counter.
fn spare_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{SPARE_PREFIX}{}-{}",
        process_token(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Random, chosen once per process (pids repeat, in containers at every restart).
fn process_token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(|| {
        let mut bytes = [0u8; 8];
        // SAFETY: getrandom writes at most `bytes.len()` bytes into the array.
        let filled = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
        let random = if filled == bytes.len() as isize {
            u64::from_ne_bytes(bytes)
        } else {
            // Unique enough: only orphan clean-up compares tokens.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|elapsed| elapsed.as_nanos() as u64)
                .unwrap_or(0);
            nanos ^ u64::from(std::process::id())
        };
        format!("{random:016x}")
    })
}

/// Removes the spares in `parent` that nobody holds: a live spare's `shim.lock` is locked
/// by the server that made it, from its creation on.
pub(crate) fn remove_orphaned_spares(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    let own_prefix = format!("{SPARE_PREFIX}{}-", process_token());
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if !name.starts_with(SPARE_PREFIX) || name.starts_with(&own_prefix) {
            continue;
        }
        if matches!(crate::is_alive(&entry.path()), Ok(false)) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl SpareRunDir {
    /// Makes a spare in `parent` (the folder of the run folders, created if missing).
    pub(crate) fn create(parent: &Path) -> std::io::Result<SpareRunDir> {
        std::fs::create_dir_all(parent)?;
        let path = parent.canonicalize()?.join(spare_name());
        std::fs::create_dir(&path)?;
        let made = Self::fill(parent, &path);
        if made.is_err() {
            let _ = std::fs::remove_dir_all(&path);
        }
        made
    }

    fn fill(parent: &Path, path: &Path) -> std::io::Result<SpareRunDir> {
        let work = path.join(WORK_DIR);
        std::fs::create_dir(&work)?;
        for sub in [INPUT_DIR, OUTPUT_DIR, TMP_DIR] {
            std::fs::create_dir(work.join(sub))?;
        }
        let shim_log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path.join(SHIM_LOG_FILE))?;
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path.join(SHIM_LOCK_FILE))?;
        match lock::try_lock_exclusive(&lock)? {
            TryLock::Acquired => {}
            TryLock::HeldElsewhere => {
                return Err(std::io::Error::other(
                    "a fresh lock file is locked elsewhere",
                ))
            }
        }
        Ok(SpareRunDir {
            parent: parent.to_path_buf(),
            folder: RemovedOnDrop(Some(path.to_path_buf())),
            lock,
            shim_log,
        })
    }

    /// Whether `run_dir` can be made from this spare: it is in the same folder and does not
    /// exist yet.
    pub(crate) fn fits(&self, run_dir: &Path) -> bool {
        run_dir.parent() == Some(self.parent.as_path())
            && run_dir.file_name().is_some()
            && std::fs::symlink_metadata(run_dir).is_err()
    }

    /// Writes `spec_json` (if given) into the spare and renames it to `run_dir` (which must
    /// [`fit`](SpareRunDir::fits)). On failure the spare is gone (dropped).
    pub(crate) fn claim(
        mut self,
        run_dir: &Path,
        spec_json: Option<&[u8]>,
    ) -> std::io::Result<ClaimedRunDir> {
        let (Some(path), Some(name)) = (self.folder.0.clone(), run_dir.file_name()) else {
            return Err(std::io::Error::other("not a spare run folder"));
        };
        let target = path.with_file_name(name);
        if let Some(spec_json) = spec_json {
            let mut spec = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path.join(SPEC_FILE))?;
            spec.write_all(spec_json)?;
        }
        let from = CString::new(path.as_os_str().as_bytes())?;
        let to = CString::new(target.as_os_str().as_bytes())?;
        // SAFETY: two NUL-terminated paths; renameat2 does not keep them.
        let renamed = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                from.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        if renamed == -1 {
            return Err(std::io::Error::last_os_error());
        }
        self.folder.0 = None;
        let SpareRunDir { lock, shim_log, .. } = self;
        Ok(ClaimedRunDir {
            run_dir: target,
            lock,
            shim_log,
        })
    }
}

/// A folder tree removed when dropped, unless its path was taken.
struct RemovedOnDrop(Option<PathBuf>);

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_dir_all(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::spare::{remove_orphaned_spares, SpareRunDir};
    use crate::{SHIM_LOCK_FILE, SHIM_LOG_FILE, SPEC_FILE, WORK_DIR};

    fn names(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_spare_becomes_a_run_folder() {
        let root = tempfile::tempdir().unwrap();
        let runs = root.path().join("runs");
        let spare = SpareRunDir::create(&runs).unwrap();
        let run_dir = runs.join("run-1");
        assert!(spare.fits(&run_dir));
        assert!(!spare.fits(&root.path().join("run-1")), "another folder");
        let claimed = spare.claim(&run_dir, Some(b"{}")).unwrap();
        assert_eq!(claimed.run_dir, run_dir.canonicalize().unwrap());
        assert_eq!(
            names(&run_dir),
            [SHIM_LOCK_FILE, SHIM_LOG_FILE, SPEC_FILE, WORK_DIR]
        );
        assert_eq!(names(&run_dir.join(WORK_DIR)), ["input", "output", "tmp"]);
        assert_eq!(std::fs::read(run_dir.join(SPEC_FILE)).unwrap(), b"{}");
        // The lock is held (by the claimed file) across the rename.
        assert!(crate::is_alive(&run_dir).unwrap());
        drop(claimed);
        assert!(!crate::is_alive(&run_dir).unwrap());
        assert_eq!(names(&runs), ["run-1"]);
    }

    #[test]
    fn an_existing_run_folder_is_never_replaced() {
        let root = tempfile::tempdir().unwrap();
        let runs = root.path().join("runs");
        let run_dir = runs.join("run-1");
        std::fs::create_dir_all(&run_dir).unwrap();
        let spare = SpareRunDir::create(&runs).unwrap();
        assert!(!spare.fits(&run_dir));
        // Even when it appears between the check and the rename.
        let error = spare.claim(&run_dir, None).err().unwrap();
        assert_eq!(error.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(names(&runs), ["run-1"], "the spare is removed");
        assert!(names(&run_dir).is_empty());
    }

    #[test]
    fn unused_and_orphaned_spares_are_removed() {
        let root = tempfile::tempdir().unwrap();
        let runs = root.path().join("runs");
        drop(SpareRunDir::create(&runs).unwrap());
        assert!(names(&runs).is_empty());
        let ours = SpareRunDir::create(&runs).unwrap();
        // Another server's live spare (locked), a dead server's (lock free, or none yet).
        let live = runs.join(".spare-live-0");
        std::fs::create_dir(&live).unwrap();
        let live_lock = std::fs::File::create(live.join(SHIM_LOCK_FILE)).unwrap();
        assert_eq!(
            crate::lock::try_lock_exclusive(&live_lock).unwrap(),
            crate::lock::TryLock::Acquired
        );
        for orphan in [".spare-dead-0", ".spare-dead-1"] {
            std::fs::create_dir(runs.join(orphan)).unwrap();
        }
        std::fs::File::create(runs.join(".spare-dead-1").join(SHIM_LOCK_FILE)).unwrap();
        std::fs::create_dir(runs.join("run-1")).unwrap();
        remove_orphaned_spares(&runs);
        let left = names(&runs);
        assert_eq!(left.len(), 3, "{left:?}");
        assert!(left.contains(&".spare-live-0".to_string()), "{left:?}");
        assert!(left.contains(&"run-1".to_string()), "{left:?}");
        drop(ours);
        assert_eq!(names(&runs), [".spare-live-0", "run-1"]);
    }
}
