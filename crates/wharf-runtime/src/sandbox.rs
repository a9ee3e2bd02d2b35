//! The bubblewrap sandbox: building the `bwrap` command line.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{LaunchSpec, WORK_DIR};

/// Where the app folder appears in the sandbox (read-only, the working directory).
pub(crate) const SANDBOX_APP_DIR: &str = "/app";
/// Where `RUN/work` appears in the sandbox.
pub(crate) const SANDBOX_WORK_DIR: &str = "/work";

/// The top-level folders that distributions either symlink into `/usr` (merged /usr, as on
/// Debian 12) or keep as real folders.
const ROOT_LIB_ENTRIES: [&str; 6] = ["bin", "sbin", "lib", "lib64", "lib32", "libx32"];

/// What a top-level folder such as `/lib` is on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RootEntry {
    /// A symlink with this target (`usr/lib`): recreated as the same symlink.
    Symlink(PathBuf),
    /// A real folder: bound read-only.
    Directory,
    /// Absent: left out.
    Missing,
}

/// Looks at the host's `/bin`, `/lib`, ... so the sandbox mirrors them.
pub(crate) fn host_root_entries() -> Vec<(&'static str, RootEntry)> {
    ROOT_LIB_ENTRIES
        .iter()
        .map(|name| {
            let path = Path::new("/").join(name);
            let entry = match std::fs::symlink_metadata(&path) {
                Ok(metadata) if metadata.file_type().is_symlink() => {
                    match std::fs::read_link(&path) {
                        Ok(target) => RootEntry::Symlink(target),
                        Err(_) => RootEntry::Missing,
                    }
                }
                Ok(metadata) if metadata.is_dir() => RootEntry::Directory,
                _ => RootEntry::Missing,
            };
            (*name, entry)
        })
        .collect()
}

/// The arguments of `bwrap` (without the program itself) that run `spec.command` in the
/// sandbox.
///
/// No `--new-session`: it would `setsid()` the workload out of the shim-created process
/// group, and the group signals (timeout, cancel) would miss it. The session is only needed
/// against TIOCSTI injection into a controlling terminal, and the shim has none: it runs in
/// its own session, with stdin and stdout on /dev/null.
pub(crate) fn bubblewrap_args(
    spec: &LaunchSpec,
    run_dir: &Path,
    root_entries: &[(&str, RootEntry)],
) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let mut push =
        |parts: &[&std::ffi::OsStr]| args.extend(parts.iter().map(|part| part.to_os_string()));
    push(&[
        "--die-with-parent".as_ref(),
        "--unshare-all".as_ref(),
        "--share-net".as_ref(),
        "--ro-bind".as_ref(),
        "/usr".as_ref(),
        "/usr".as_ref(),
        "--ro-bind".as_ref(),
        "/etc".as_ref(),
        "/etc".as_ref(),
    ]);
    for (name, entry) in root_entries {
        let destination = Path::new("/").join(name);
        match entry {
            RootEntry::Symlink(target) => push(&[
                "--symlink".as_ref(),
                target.as_os_str(),
                destination.as_os_str(),
            ]),
            RootEntry::Directory => push(&[
                "--ro-bind".as_ref(),
                destination.as_os_str(),
                destination.as_os_str(),
            ]),
            RootEntry::Missing => {}
        }
    }
    let work_dir = run_dir.join(WORK_DIR);
    push(&[
        "--proc".as_ref(),
        "/proc".as_ref(),
        "--dev".as_ref(),
        "/dev".as_ref(),
        "--tmpfs".as_ref(),
        "/tmp".as_ref(),
        "--ro-bind".as_ref(),
        spec.app_dir.as_os_str(),
        SANDBOX_APP_DIR.as_ref(),
        "--bind".as_ref(),
        work_dir.as_os_str(),
        SANDBOX_WORK_DIR.as_ref(),
        "--chdir".as_ref(),
        SANDBOX_APP_DIR.as_ref(),
    ]);
    for bind in &spec.extra_ro_binds {
        push(&["--ro-bind".as_ref(), bind.as_os_str(), bind.as_os_str()]);
    }
    push(&["--".as_ref()]);
    for argument in &spec.command {
        push(&[argument.as_ref()]);
    }
    args
}

/// Finds `program` in the folders of a `PATH` value.
pub(crate) fn find_on_path(program: &str, path_value: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    let path_value = path_value?;
    std::env::split_paths(path_value)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable_file(candidate))
}

fn is_executable_file(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The `bwrap` executable the shim uses: from the shim's `PATH`, else `/usr/bin/bwrap`.
pub(crate) fn bubblewrap_program() -> PathBuf {
    find_on_path("bwrap", std::env::var_os("PATH").as_deref())
        .unwrap_or_else(|| PathBuf::from("/usr/bin/bwrap"))
}

/// Whether bubblewrap is installed and can create a sandbox here (`bwrap --ro-bind / / true`
/// succeeds: user namespaces or root are available).
pub fn bubblewrap_available() -> bool {
    let Some(program) = find_on_path("bwrap", std::env::var_os("PATH").as_deref()) else {
        return false;
    };
    Command::new(program)
        .args(["--ro-bind", "/", "/", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|status| status.success())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use crate::sandbox::{bubblewrap_args, find_on_path, RootEntry};
    use crate::{LaunchSpec, Sandbox};

    fn check(root_entries: &[(&str, RootEntry)], extra_ro_binds: &[&str], expect: &str) {
        let spec = LaunchSpec {
            workload_id: "run-1".into(),
            command: vec!["Rscript".into(), "job.R".into()],
            env: vec![],
            app_dir: PathBuf::from("/srv/apps/sales/3"),
            sandbox: Sandbox::Bubblewrap,
            timeout: Some(Duration::from_secs(1)),
            kill_grace: Duration::from_secs(1),
            extra_ro_binds: extra_ro_binds.iter().map(PathBuf::from).collect(),
            secrets: None,
        };
        let args = bubblewrap_args(&spec, Path::new("/srv/runs/r1"), root_entries);
        let text: Vec<String> = args
            .iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect();
        assert_eq!(text.join(" "), expect);
    }

    const COMMON_START: &str =
        "--die-with-parent --unshare-all --share-net --ro-bind /usr /usr --ro-bind /etc /etc";
    const COMMON_END: &str = "--proc /proc --dev /dev --tmpfs /tmp --ro-bind /srv/apps/sales/3 /app --bind /srv/runs/r1/work /work --chdir /app";

    #[test]
    fn bubblewrap_command_lines() {
        let merged_usr = [
            ("bin", RootEntry::Symlink("usr/bin".into())),
            ("sbin", RootEntry::Symlink("usr/sbin".into())),
            ("lib", RootEntry::Symlink("usr/lib".into())),
            ("lib64", RootEntry::Symlink("usr/lib64".into())),
            ("lib32", RootEntry::Missing),
        ];
        check(
            &merged_usr,
            &[],
            &format!("{COMMON_START} --symlink usr/bin /bin --symlink usr/sbin /sbin --symlink usr/lib /lib --symlink usr/lib64 /lib64 {COMMON_END} -- Rscript job.R"),
        );
        check(
            &merged_usr[..1],
            &["/opt/R", "/srv/shared lib"],
            &format!("{COMMON_START} --symlink usr/bin /bin {COMMON_END} --ro-bind /opt/R /opt/R --ro-bind /srv/shared lib /srv/shared lib -- Rscript job.R"),
        );
        let split_usr = [
            ("bin", RootEntry::Directory),
            ("lib", RootEntry::Directory),
            ("lib64", RootEntry::Missing),
        ];
        check(
            &split_usr,
            &[],
            &format!("{COMMON_START} --ro-bind /bin /bin --ro-bind /lib /lib {COMMON_END} -- Rscript job.R"),
        );
    }

    #[test]
    fn finds_programs_on_path() {
        assert_eq!(
            find_on_path("sh", Some("/nonexistent:/bin".as_ref())),
            Some(PathBuf::from("/bin/sh"))
        );
        assert_eq!(
            find_on_path("sh", Some("relative:/nonexistent".as_ref())),
            None
        );
        assert_eq!(find_on_path("sh", None), None);
        assert_eq!(
            find_on_path("no-such-program-wharf", Some("/bin:/usr/bin".as_ref())),
            None
        );
    }

    #[test]
    fn host_layout_is_read() {
        // Every entry is classified; on merged-/usr hosts /bin is a symlink into usr.
        let entries = crate::sandbox::host_root_entries();
        assert_eq!(entries.len(), 6);
    }
}
