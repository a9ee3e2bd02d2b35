//! Packing an app folder into a deterministic tar.gz.
//!
//! Packing happens in two steps: first the folder is listed and every entry checked (ignore
//! files, link targets, special files, total size), then the archive is written. So a folder
//! that cannot be bundled fails before a single byte reaches the output.

use std::cell::Cell;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use flate2::write::GzEncoder;
use flate2::Compression;

use crate::error::BundleError;
use crate::rules::{check_entry_path, check_link_target, LinkTargetProblem};

/// The name of Wharf's own ignore file (gitignore syntax). Its rules take precedence over
/// `.gitignore` in the same folder, so `!data.csv` in `.wharfignore` can bring back a file
/// that `.gitignore` leaves out.
pub const IGNORE_FILE_NAME: &str = ".wharfignore";

/// Names that are never bundled, at any depth: git's own data and R session leftovers.
pub const ALWAYS_SKIPPED_NAMES: [&str; 4] = [".git", ".Rhistory", ".RData", ".Rproj.user"];

/// How to pack.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackOptions {
    /// Refuse to pack when the regular files to bundle add up to more bytes than this
    /// (uncompressed). `None`: no limit.
    pub max_size: Option<u64>,
}

/// What was packed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackSummary {
    /// Number of regular files in the bundle.
    pub files: u64,
    /// Uncompressed bytes of regular files.
    pub bytes: u64,
}

/// Pack `dir` into a gzip-compressed tar written to `out`.
///
/// - `.gitignore` and `.wharfignore` (gitignore syntax) are honoured at any level inside
///   `dir`, whether or not it is in a git repository; `.wharfignore` wins over `.gitignore`.
///   Ignore files above `dir`, git's global excludes and `.git/info/exclude` are not read, so
///   the bundle depends on the folder alone.
/// - [`ALWAYS_SKIPPED_NAMES`] (`.git`, `.Rhistory`, `.RData`, `.Rproj.user`) are skipped at
///   any depth; other hidden files are bundled unless an ignore file says otherwise.
/// - Paths are relative, '/'-separated and sorted; mtime, uid and gid are 0; modes are 0644,
///   0755 for executables and folders: the same folder gives byte-identical output.
/// - Folders get entries (empty folders survive). Symbolic links are stored as links when
///   their target is relative and stays inside `dir`; otherwise packing fails. Fifos,
///   sockets and devices fail too.
///
/// On error, `out` may have received part of a gzip stream but never a complete one, so a
/// failed pack cannot be mistaken for a smaller, valid bundle.
pub fn pack(
    dir: &Path,
    out: impl Write,
    options: &PackOptions,
) -> Result<PackSummary, BundleError> {
    pack_with_progress(dir, out, options, |_, _| {})
}

/// Like [`pack`], but calls `on_file(relative_path, bytes)` after each regular file is written.
pub fn pack_with_progress(
    dir: &Path,
    out: impl Write,
    options: &PackOptions,
    mut on_file: impl FnMut(&str, u64),
) -> Result<PackSummary, BundleError> {
    let entries = list_entries(dir)?;
    check_total_size(dir, &entries, options)?;

    let poisoned = Rc::new(Cell::new(false));
    let guarded = PoisonableWriter {
        inner: out,
        poisoned: Rc::clone(&poisoned),
    };
    let mut builder = tar::Builder::new(GzEncoder::new(guarded, Compression::default()));
    let summary = match write_entries(&mut builder, &entries, &mut on_file) {
        Ok(summary) => summary,
        Err(error) => {
            // Dropping the builder and the encoder writes the end of the archive and the gzip
            // trailer; a poisoned writer refuses them, so the output stays incomplete.
            poisoned.set(true);
            drop(builder);
            return Err(error);
        }
    };
    let encoder = builder.into_inner().map_err(BundleError::Write)?;
    let mut guarded = encoder.finish().map_err(BundleError::Write)?;
    guarded.inner.flush().map_err(BundleError::Write)?;
    Ok(summary)
}

/// One thing to put in the archive.
#[derive(Debug)]
struct PlannedEntry {
    /// Relative '/'-path, used as the archive name.
    relative: String,
    /// Where it is on disk.
    absolute: PathBuf,
    kind: PlannedKind,
}

#[derive(Debug)]
enum PlannedKind {
    Directory,
    File { size: u64, executable: bool },
    Symlink { target: String },
}

/// Lists what goes in the bundle, sorted by path components, every entry checked.
fn list_entries(dir: &Path) -> Result<Vec<PlannedEntry>, BundleError> {
    let root = std::fs::canonicalize(dir).map_err(|source| BundleError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    if !root.is_dir() {
        return Err(BundleError::NotADirectory {
            path: dir.to_path_buf(),
        });
    }

    let mut walk_builder = ignore::WalkBuilder::new(&root);
    walk_builder
        .standard_filters(false)
        .git_ignore(true)
        .require_git(false)
        .follow_links(false)
        .add_custom_ignore_filename(IGNORE_FILE_NAME)
        .filter_entry(|entry| entry.depth() == 0 || !is_always_skipped(entry.file_name()));

    let mut planned = Vec::new();
    for walked in walk_builder.build() {
        let walked = walked.map_err(|error| BundleError::Walk {
            dir: dir.to_path_buf(),
            message: error.to_string(),
        })?;
        if walked.depth() == 0 {
            continue;
        }
        let absolute = walked.path().to_path_buf();
        let (relative, components) = relative_name(&root, &absolute)?;
        let Some(file_type) = walked.file_type() else {
            continue;
        };
        let kind = if file_type.is_dir() {
            PlannedKind::Directory
        } else if file_type.is_file() {
            let metadata =
                std::fs::symlink_metadata(&absolute).map_err(|source| BundleError::Io {
                    path: absolute.clone(),
                    source,
                })?;
            PlannedKind::File {
                size: metadata.len(),
                executable: metadata.permissions().mode() & 0o111 != 0,
            }
        } else if file_type.is_symlink() {
            let target = std::fs::read_link(&absolute).map_err(|source| BundleError::Io {
                path: absolute.clone(),
                source,
            })?;
            PlannedKind::Symlink {
                target: checked_link_target(&relative, &components, target.as_os_str())?,
            }
        } else {
            return Err(BundleError::UnsupportedEntry {
                path: relative,
                kind: special_file_kind(&file_type).to_string(),
            });
        };
        planned.push((
            components,
            PlannedEntry {
                relative,
                absolute,
                kind,
            },
        ));
    }
    planned.sort_by(|(left, _), (right, _)| left.cmp(right));
    Ok(planned.into_iter().map(|(_, entry)| entry).collect())
}

fn is_always_skipped(name: &OsStr) -> bool {
    ALWAYS_SKIPPED_NAMES
        .iter()
        .any(|skipped| name.as_bytes() == skipped.as_bytes())
}

/// The '/'-joined relative name of `absolute` under `root`, checked with the unpack rules.
fn relative_name(root: &Path, absolute: &Path) -> Result<(String, Vec<String>), BundleError> {
    let relative_path = absolute.strip_prefix(root).map_err(|_| BundleError::Walk {
        dir: root.to_path_buf(),
        message: format!("{} is not inside the folder", absolute.display()),
    })?;
    let mut raw = Vec::new();
    for component in relative_path.components() {
        if let Component::Normal(name) = component {
            if !raw.is_empty() {
                raw.push(b'/');
            }
            raw.extend_from_slice(name.as_bytes());
        }
    }
    let lossy = String::from_utf8_lossy(&raw).into_owned();
    let components = check_entry_path(&raw).map_err(|reason| BundleError::UnsafePath {
        path: lossy.clone(),
        reason,
    })?;
    Ok((components.join("/"), components))
}

fn checked_link_target(
    relative: &str,
    components: &[String],
    target: &OsStr,
) -> Result<String, BundleError> {
    let target_lossy = target.to_string_lossy().into_owned();
    match check_link_target(components, target.as_bytes()) {
        Ok(()) => Ok(target_lossy),
        Err(LinkTargetProblem::Escapes) => Err(BundleError::LinkEscapes {
            path: relative.to_string(),
            target: target_lossy,
        }),
        Err(LinkTargetProblem::Refused(reason)) => Err(BundleError::UnsafeLink {
            path: relative.to_string(),
            target: target_lossy,
            reason,
        }),
    }
}

fn special_file_kind(file_type: &std::fs::FileType) -> &'static str {
    if file_type.is_fifo() {
        "fifo (named pipe)"
    } else if file_type.is_socket() {
        "socket"
    } else if file_type.is_char_device() {
        "character device"
    } else if file_type.is_block_device() {
        "block device"
    } else {
        "special file"
    }
}

fn check_total_size(
    dir: &Path,
    entries: &[PlannedEntry],
    options: &PackOptions,
) -> Result<(), BundleError> {
    let Some(limit) = options.max_size else {
        return Ok(());
    };
    let mut files: Vec<(String, u64)> = entries
        .iter()
        .filter_map(|entry| match entry.kind {
            PlannedKind::File { size, .. } => Some((entry.relative.clone(), size)),
            _ => None,
        })
        .collect();
    let bytes = files
        .iter()
        .fold(0u64, |total, (_, size)| total.saturating_add(*size));
    if bytes <= limit {
        return Ok(());
    }
    files.sort_by(|(left_path, left_size), (right_path, right_size)| {
        right_size.cmp(left_size).then(left_path.cmp(right_path))
    });
    files.truncate(5);
    Err(BundleError::FolderTooLarge {
        dir: dir.to_path_buf(),
        bytes,
        limit,
        largest: files,
    })
}

fn write_entries<W: Write>(
    builder: &mut tar::Builder<W>,
    entries: &[PlannedEntry],
    on_file: &mut impl FnMut(&str, u64),
) -> Result<PackSummary, BundleError> {
    let mut summary = PackSummary::default();
    for entry in entries {
        match &entry.kind {
            PlannedKind::Directory => {
                let mut header = deterministic_header(tar::EntryType::Directory, 0o755, 0);
                builder
                    .append_data(
                        &mut header,
                        format!("{}/", entry.relative),
                        std::io::empty(),
                    )
                    .map_err(BundleError::Write)?;
            }
            PlannedKind::Symlink { target } => {
                let mut header = deterministic_header(tar::EntryType::Symlink, 0o777, 0);
                builder
                    .append_link(&mut header, &entry.relative, target)
                    .map_err(BundleError::Write)?;
            }
            PlannedKind::File { size, executable } => {
                append_file(builder, entry, *size, *executable)?;
                summary.files += 1;
                summary.bytes += size;
                on_file(&entry.relative, *size);
            }
        }
    }
    Ok(summary)
}

fn deterministic_header(entry_type: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(entry_type);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

/// Appends a regular file, checking it still has the size it had when listed.
fn append_file<W: Write>(
    builder: &mut tar::Builder<W>,
    entry: &PlannedEntry,
    size: u64,
    executable: bool,
) -> Result<(), BundleError> {
    let io_error = |source| BundleError::Io {
        path: entry.absolute.clone(),
        source,
    };
    let changed = || BundleError::ChangedDuringPack {
        path: entry.absolute.clone(),
    };
    let mut file = File::open(&entry.absolute).map_err(io_error)?;
    if file.metadata().map_err(io_error)?.len() != size {
        return Err(changed());
    }
    let mode = if executable { 0o755 } else { 0o644 };
    let mut header = deterministic_header(tar::EntryType::Regular, mode, size);
    let mut reader = ExactSizeReader {
        file: &mut file,
        remaining: size,
        failure: None,
    };
    if let Err(write_error) = builder.append_data(&mut header, &entry.relative, &mut reader) {
        return Err(match reader.failure.take() {
            Some(ReadFailure::Io(source)) => io_error(source),
            Some(ReadFailure::Shrank) => changed(),
            None => BundleError::Write(write_error),
        });
    }
    let mut probe = [0u8; 1];
    if file.read(&mut probe).map_err(io_error)? != 0 {
        return Err(changed());
    }
    Ok(())
}

enum ReadFailure {
    Io(std::io::Error),
    Shrank,
}

/// Reads exactly `remaining` bytes from a file, remembering why it failed so that the caller
/// can tell a file problem from an output problem (the tar builder mixes both).
struct ExactSizeReader<'file> {
    file: &'file mut File,
    remaining: u64,
    failure: Option<ReadFailure>,
}

impl Read for ExactSizeReader<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        if self.remaining == 0 || buffer.is_empty() {
            return Ok(0);
        }
        let wanted = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(buffer.len());
        loop {
            match self.file.read(&mut buffer[..wanted]) {
                Ok(0) => {
                    self.failure = Some(ReadFailure::Shrank);
                    return Err(std::io::Error::other("file shrank while being bundled"));
                }
                Ok(read) => {
                    self.remaining -= read as u64;
                    return Ok(read);
                }
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    let message = error.to_string();
                    self.failure = Some(ReadFailure::Io(error));
                    return Err(std::io::Error::other(message));
                }
            }
        }
    }
}

/// Passes writes through until poisoned (explicitly, or by a failed write); then refuses them.
struct PoisonableWriter<W> {
    inner: W,
    poisoned: Rc<Cell<bool>>,
}

impl<W: Write> Write for PoisonableWriter<W> {
    fn write(&mut self, buffer: &[u8]) -> std::io::Result<usize> {
        if self.poisoned.get() {
            return Err(std::io::Error::other(
                "bundle output abandoned after an error",
            ));
        }
        let result = self.inner.write(buffer);
        if matches!(&result, Err(error) if error.kind() != std::io::ErrorKind::Interrupted) {
            self.poisoned.set(true);
        }
        result
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.poisoned.get() {
            return Err(std::io::Error::other(
                "bundle output abandoned after an error",
            ));
        }
        self.inner.flush()
    }
}
