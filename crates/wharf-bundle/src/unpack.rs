//! Unpacking an untrusted tar.gz into an empty folder.
//!
//! The archive is read in the tar crate's raw mode: GNU long names, long link names and pax
//! headers are collected here, with size caps, instead of being read whole into memory by the
//! tar crate. Each entry is then checked ([`crate::rules`]) and written by hand: parent folders
//! are verified one by one with `symlink_metadata` (never followed), files are created with
//! `create_new` (which never follows a link at the final component), and bytes are counted as
//! they are written.

use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::fs::{self, OpenOptions, Permissions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use flate2::read::GzDecoder;

use crate::error::BundleError;
use crate::rules::{check_entry_path, check_link_target, LinkTargetProblem};

/// Limits applied while unpacking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Most bytes written to regular files, counted as written (a file replaced by a later
    /// entry of the same name still counts). Default 2 GiB.
    pub max_unpacked_bytes: u64,
    /// Most entries created: regular files, folders (including implied parent folders) and
    /// links. Default 100 000.
    pub max_files: u64,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        Self {
            max_unpacked_bytes: 2 * 1024 * 1024 * 1024,
            max_files: 100_000,
        }
    }
}

/// What was unpacked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackSummary {
    /// Relative '/'-paths of the regular files in the bundle, sorted.
    pub files: Vec<String>,
    /// Their total size in bytes.
    pub bytes: u64,
}

/// Longest GNU long name or long link name accepted.
const MAX_LONG_NAME_BYTES: u64 = 64 * 1024;
/// Largest pax header (local or global) accepted.
const MAX_PAX_HEADER_BYTES: u64 = 1024 * 1024;
/// Most zero padding accepted after the end-of-archive marker.
const MAX_TRAILING_BYTES: u64 = 1024 * 1024;
/// Headers, padding and extensions allowed per entry on top of file contents when capping the
/// decompressed stream (bounds the work a small, highly compressed upload can cause).
const STREAM_BYTES_PER_ENTRY: u64 = 4096;
const STREAM_BYTES_FIXED: u64 = 4 * 1024 * 1024;

/// Unpack a tar.gz from `input` into `dest`, an existing, empty, real folder.
///
/// The input is untrusted. Refused, with an error naming the entry: absolute or Windows-style
/// paths, backslashes, `..` components, NUL bytes, empty names; links whose target is absolute
/// or leaves the bundle (and targets with `..` after a folder name); hard links, devices,
/// fifos, sparse files and unknown entry types; anything inside a link or a file; a file
/// replacing a folder or the reverse; more than the limits; damaged, truncated or
/// self-contradicting archives. A later file or link of the same name replaces an earlier
/// one (the link itself, never its target).
///
/// Files are written 0644, or 0755 when any execute bit was set; folders 0755; owners,
/// times, setuid, setgid and sticky bits are not restored. Nothing is ever written outside
/// `dest`. On error `dest` holds a partial bundle: the caller deletes it.
pub fn unpack(
    input: impl Read,
    dest: &Path,
    limits: &UnpackLimits,
) -> Result<UnpackSummary, BundleError> {
    check_destination(dest)?;
    let exceeded = Rc::new(Cell::new(false));
    let stream_cap = limits
        .max_unpacked_bytes
        .saturating_add(limits.max_files.saturating_mul(STREAM_BYTES_PER_ENTRY))
        .saturating_add(STREAM_BYTES_FIXED);
    let reader = CappedReader {
        inner: GzDecoder::new(input),
        remaining: stream_cap,
        exceeded: Rc::clone(&exceeded),
    };
    let mut archive = tar::Archive::new(reader);
    let mut unpacker = Unpacker {
        dest: dest.to_path_buf(),
        limits: limits.clone(),
        exceeded,
        entries_created: 0,
        bytes_written: 0,
        files: BTreeMap::new(),
        real_directories: HashSet::new(),
        last_entry: None,
        buffer: vec![0; 64 * 1024],
    };

    {
        let entries = archive
            .entries()
            .map_err(|error| unpacker.stream_error(error))?
            .raw(true);
        let mut pending = Extensions::default();
        for entry in entries {
            let mut entry = entry.map_err(|error| unpacker.stream_error(error))?;
            match entry.header().entry_type().as_byte() {
                b'L' => {
                    if pending.long_name.is_some() {
                        return Err(unpacker.corrupt("two long-name headers describe one entry"));
                    }
                    let name = unpacker.read_extension(&mut entry, MAX_LONG_NAME_BYTES)?;
                    pending.long_name = Some(trim_trailing_nuls(name));
                }
                b'K' => {
                    if pending.long_link.is_some() {
                        return Err(unpacker.corrupt("two long-link headers describe one entry"));
                    }
                    let name = unpacker.read_extension(&mut entry, MAX_LONG_NAME_BYTES)?;
                    pending.long_link = Some(trim_trailing_nuls(name));
                }
                b'x' => {
                    if pending.pax_seen {
                        return Err(unpacker.corrupt("two pax headers describe one entry"));
                    }
                    let records = unpacker.read_extension(&mut entry, MAX_PAX_HEADER_BYTES)?;
                    pending
                        .add_pax(&records)
                        .map_err(|reason| unpacker.corrupt(&reason))?;
                }
                b'g' => {
                    // Global pax headers (git archive writes one with the commit id) hold
                    // nothing we use; read them only to enforce the size cap.
                    unpacker.read_extension(&mut entry, MAX_PAX_HEADER_BYTES)?;
                }
                _ => {
                    let extensions = std::mem::take(&mut pending);
                    unpacker.unpack_entry(&mut entry, extensions)?;
                }
            }
        }
        if pending.is_present() {
            return Err(unpacker.corrupt(
                "the archive ends with a long-name or pax header that describes no entry",
            ));
        }
    }

    unpacker.check_trailing_data(archive.into_inner())?;
    Ok(unpacker.into_summary())
}

fn check_destination(dest: &Path) -> Result<(), BundleError> {
    let refuse = |reason: String| BundleError::BadDestination {
        path: dest.to_path_buf(),
        reason,
    };
    let metadata = fs::symlink_metadata(dest)
        .map_err(|error| refuse(format!("{error}; create it as an empty folder first")))?;
    if metadata.file_type().is_symlink() {
        return Err(refuse(
            "it is a symbolic link; give a real, empty folder".to_string(),
        ));
    }
    if !metadata.is_dir() {
        return Err(refuse("it is not a folder".to_string()));
    }
    let mut listing = fs::read_dir(dest).map_err(|error| refuse(error.to_string()))?;
    if listing.next().is_some() {
        return Err(refuse(
            "it is not empty; unpack into a fresh, empty folder".to_string(),
        ));
    }
    Ok(())
}

fn trim_trailing_nuls(mut bytes: Vec<u8>) -> Vec<u8> {
    while bytes.last() == Some(&0) {
        bytes.pop();
    }
    bytes
}

/// GNU and pax extension headers seen before the entry they describe.
#[derive(Debug, Default)]
struct Extensions {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax_seen: bool,
    pax_path: Option<Vec<u8>>,
    pax_link: Option<Vec<u8>>,
    pax_size: Option<u64>,
    pax_sparse: bool,
}

impl Extensions {
    fn is_present(&self) -> bool {
        self.long_name.is_some() || self.long_link.is_some() || self.pax_seen
    }

    fn add_pax(&mut self, records: &[u8]) -> Result<(), String> {
        self.pax_seen = true;
        for record in tar::PaxExtensions::new(records) {
            let record = record.map_err(|error| format!("a pax header is malformed: {error}"))?;
            let key = record.key_bytes();
            if key == b"path" {
                self.pax_path = Some(record.value_bytes().to_vec());
            } else if key == b"linkpath" {
                self.pax_link = Some(record.value_bytes().to_vec());
            } else if key == b"size" {
                let size = std::str::from_utf8(record.value_bytes())
                    .ok()
                    .and_then(|text| text.trim().parse::<u64>().ok())
                    .ok_or_else(|| "a pax header has a size that is not a number".to_string())?;
                self.pax_size = Some(size);
            } else if key.starts_with(b"GNU.sparse.") {
                self.pax_sparse = true;
            }
        }
        Ok(())
    }
}

/// What an archive entry asks us to create.
enum EntryKind {
    File,
    Directory,
    Symlink,
    Unsupported(String),
}

fn classify(type_byte: u8, raw_path: &[u8]) -> EntryKind {
    match type_byte {
        // Old tar wrote folders as regular entries whose name ends in '/'.
        b'0' | b'\0' | b'7' if raw_path.ends_with(b"/") => EntryKind::Directory,
        b'0' | b'\0' | b'7' => EntryKind::File,
        b'5' => EntryKind::Directory,
        b'2' => EntryKind::Symlink,
        b'1' => EntryKind::Unsupported("hard link".to_string()),
        b'3' => EntryKind::Unsupported("character device".to_string()),
        b'4' => EntryKind::Unsupported("block device".to_string()),
        b'6' => EntryKind::Unsupported("fifo (named pipe)".to_string()),
        b'S' => EntryKind::Unsupported("sparse file".to_string()),
        other => {
            EntryKind::Unsupported(format!("tar entry of unknown type {:?}", char::from(other)))
        }
    }
}

struct Unpacker {
    dest: PathBuf,
    limits: UnpackLimits,
    /// Set by [`CappedReader`] when the decompressed stream went over its cap.
    exceeded: Rc<Cell<bool>>,
    entries_created: u64,
    bytes_written: u64,
    /// Regular files now in `dest` and their sizes.
    files: BTreeMap<String, u64>,
    /// Relative paths known to be real folders we created or checked. Folders are never
    /// removed or replaced, so the cache cannot go stale.
    real_directories: HashSet<String>,
    /// Name of the entry being read, for error messages.
    last_entry: Option<String>,
    buffer: Vec<u8>,
}

impl Unpacker {
    fn corrupt(&self, problem: &str) -> BundleError {
        match &self.last_entry {
            Some(entry) => BundleError::Corrupt(format!("{problem} (after entry {entry:?})")),
            None => BundleError::Corrupt(problem.to_string()),
        }
    }

    /// Maps an error from reading the archive: over the stream cap, or damaged input.
    fn stream_error(&self, error: std::io::Error) -> BundleError {
        if self.exceeded.get() {
            return BundleError::TooLarge {
                limit: self.limits.max_unpacked_bytes,
            };
        }
        match &self.last_entry {
            Some(entry) => BundleError::Corrupt(format!("at entry {entry:?}: {error}")),
            None => BundleError::Corrupt(error.to_string()),
        }
    }

    /// Reads the data of an extension header (long name, pax), at most `cap` bytes.
    fn read_extension(
        &self,
        entry: &mut tar::Entry<'_, impl Read>,
        cap: u64,
    ) -> Result<Vec<u8>, BundleError> {
        let declared = entry.size();
        if declared > cap {
            return Err(self.corrupt(&format!(
                "an extension header holds {declared} bytes, more than the {cap} allowed"
            )));
        }
        let mut data = Vec::new();
        entry
            .take(cap)
            .read_to_end(&mut data)
            .map_err(|error| self.stream_error(error))?;
        if data.len() as u64 != declared {
            return Err(self.corrupt("an extension header is truncated"));
        }
        Ok(data)
    }

    fn unpack_entry(
        &mut self,
        entry: &mut tar::Entry<'_, impl Read>,
        extensions: Extensions,
    ) -> Result<(), BundleError> {
        let raw_path = match (&extensions.long_name, &extensions.pax_path) {
            (Some(long_name), _) => long_name.clone(),
            (None, Some(pax_path)) => pax_path.clone(),
            (None, None) => entry.header().path_bytes().into_owned(),
        };
        let display = String::from_utf8_lossy(&raw_path).into_owned();
        self.last_entry = Some(display.clone());
        let components = check_entry_path(&raw_path).map_err(|reason| BundleError::UnsafePath {
            path: display.clone(),
            reason,
        })?;
        if let Some(pax_size) = extensions.pax_size {
            if pax_size != entry.size() {
                return Err(BundleError::Corrupt(format!(
                    "entry {display:?} has a pax size of {pax_size} bytes but a header size of \
                     {} bytes; archives that contradict themselves are refused",
                    entry.size()
                )));
            }
        }
        let type_byte = entry.header().entry_type().as_byte();
        let kind = if extensions.pax_sparse {
            EntryKind::Unsupported("sparse file".to_string())
        } else {
            classify(type_byte, &raw_path)
        };
        let target = TargetEntry {
            relative: components.join("/"),
            components,
            display,
        };
        match kind {
            EntryKind::Unsupported(kind) => Err(BundleError::UnsupportedEntry {
                path: target.display,
                kind,
            }),
            EntryKind::Directory if target.components.is_empty() => Ok(()),
            _ if target.components.is_empty() => Err(BundleError::UnsafePath {
                path: target.display,
                reason: "its name is empty or names the bundle folder itself".to_string(),
            }),
            EntryKind::Directory => {
                self.make_parents(&target)?;
                self.make_final_directory(&target)
            }
            EntryKind::File => {
                self.make_parents(&target)?;
                self.write_file(entry, &target)
            }
            EntryKind::Symlink => {
                let link_target = extensions
                    .long_link
                    .or(extensions.pax_link)
                    .or_else(|| {
                        entry
                            .header()
                            .link_name_bytes()
                            .map(|name| name.into_owned())
                    })
                    .unwrap_or_default();
                self.make_parents(&target)?;
                self.make_symlink(&target, &link_target)
            }
        }
    }

    fn count_entry(&mut self) -> Result<(), BundleError> {
        if self.entries_created >= self.limits.max_files {
            return Err(BundleError::TooManyFiles {
                limit: self.limits.max_files,
            });
        }
        self.entries_created += 1;
        Ok(())
    }

    fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> BundleError + '_ {
        move |source| BundleError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn create_directory(&mut self, relative: &str) -> Result<(), BundleError> {
        self.count_entry()?;
        let absolute = self.dest.join(relative);
        fs::create_dir(&absolute).map_err(Self::io_error(&absolute))?;
        fs::set_permissions(&absolute, Permissions::from_mode(0o755))
            .map_err(Self::io_error(&absolute))?;
        self.real_directories.insert(relative.to_string());
        Ok(())
    }

    /// Makes sure every parent of `target` is a real folder, creating missing ones. Never
    /// follows a link: each existing component is checked with `symlink_metadata`.
    fn make_parents(&mut self, target: &TargetEntry) -> Result<(), BundleError> {
        let parent_count = target.components.len().saturating_sub(1);
        let mut relative = String::new();
        for component in &target.components[..parent_count] {
            if !relative.is_empty() {
                relative.push('/');
            }
            relative.push_str(component);
            if self.real_directories.contains(&relative) {
                continue;
            }
            let absolute = self.dest.join(&relative);
            match fs::symlink_metadata(&absolute) {
                Ok(metadata) if metadata.is_dir() => {
                    self.real_directories.insert(relative.clone());
                }
                Ok(metadata) if metadata.file_type().is_symlink() => {
                    return Err(BundleError::UnsafePath {
                        path: target.display.clone(),
                        reason: format!(
                            "it lies inside {relative:?}, which is a symbolic link; bundles may \
                             not write through links"
                        ),
                    });
                }
                Ok(_) => {
                    return Err(BundleError::Conflict {
                        path: target.display.clone(),
                        reason: format!(
                            "it lies inside {relative:?}, which is a file, not a folder"
                        ),
                    });
                }
                Err(error) if error.kind() == ErrorKind::NotFound => {
                    self.create_directory(&relative)?;
                }
                Err(error) => return Err(Self::io_error(&absolute)(error)),
            }
        }
        Ok(())
    }

    fn make_final_directory(&mut self, target: &TargetEntry) -> Result<(), BundleError> {
        if self.real_directories.contains(&target.relative) {
            return Ok(());
        }
        let absolute = self.dest.join(&target.relative);
        match fs::symlink_metadata(&absolute) {
            Ok(metadata) if metadata.is_dir() => {
                self.real_directories.insert(target.relative.clone());
                Ok(())
            }
            Ok(metadata) => Err(BundleError::Conflict {
                path: target.display.clone(),
                reason: format!(
                    "it is a folder, but an earlier entry of the same name is a {}",
                    describe_non_directory(&metadata)
                ),
            }),
            Err(error) if error.kind() == ErrorKind::NotFound => {
                self.create_directory(&target.relative)
            }
            Err(error) => Err(Self::io_error(&absolute)(error)),
        }
    }

    /// Removes an earlier file or link of the same name (the link itself, never its target);
    /// refuses to replace a folder.
    fn clear_final(&mut self, target: &TargetEntry, new_kind: &str) -> Result<(), BundleError> {
        let absolute = self.dest.join(&target.relative);
        match fs::symlink_metadata(&absolute) {
            Ok(metadata) if metadata.is_dir() => Err(BundleError::Conflict {
                path: target.display.clone(),
                reason: format!(
                    "it is a {new_kind}, but an earlier entry of the same name is a folder"
                ),
            }),
            Ok(_) => {
                fs::remove_file(&absolute).map_err(Self::io_error(&absolute))?;
                self.files.remove(&target.relative);
                Ok(())
            }
            Err(error) if error.kind() == ErrorKind::NotFound => Ok(()),
            Err(error) => Err(Self::io_error(&absolute)(error)),
        }
    }

    fn write_file(
        &mut self,
        entry: &mut tar::Entry<'_, impl Read>,
        target: &TargetEntry,
    ) -> Result<(), BundleError> {
        let limit = self.limits.max_unpacked_bytes;
        let declared = entry.size();
        if declared > limit {
            return Err(BundleError::EntryTooLarge {
                path: target.display.clone(),
                size: declared,
                limit,
            });
        }
        if declared > limit.saturating_sub(self.bytes_written) {
            return Err(BundleError::TooLarge { limit });
        }
        let executable = entry.header().mode().map_err(|error| {
            BundleError::Corrupt(format!(
                "entry {:?} has a bad mode: {error}",
                target.display
            ))
        })? & 0o111
            != 0;
        self.count_entry()?;
        self.clear_final(target, "file")?;

        let absolute = self.dest.join(&target.relative);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&absolute)
            .map_err(Self::io_error(&absolute))?;
        let mut copied = 0u64;
        loop {
            let read = match entry.read(&mut self.buffer) {
                Ok(0) => break,
                Ok(read) => read,
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(error) => return Err(self.stream_error(error)),
            };
            copied += read as u64;
            self.bytes_written += read as u64;
            // The entry reader stops at the header size; this guards the limit regardless.
            if self.bytes_written > limit {
                return Err(BundleError::TooLarge { limit });
            }
            file.write_all(&self.buffer[..read])
                .map_err(Self::io_error(&absolute))?;
        }
        if copied != declared {
            return Err(BundleError::Corrupt(format!(
                "entry {:?} is truncated: its header promises {declared} bytes but the archive \
                 ends after {copied}",
                target.display
            )));
        }
        let mode = if executable { 0o755 } else { 0o644 };
        file.set_permissions(Permissions::from_mode(mode))
            .map_err(Self::io_error(&absolute))?;
        self.files.insert(target.relative.clone(), copied);
        Ok(())
    }

    fn make_symlink(
        &mut self,
        target: &TargetEntry,
        link_target: &[u8],
    ) -> Result<(), BundleError> {
        let target_display = String::from_utf8_lossy(link_target).into_owned();
        let checked = check_link_target(&target.components, link_target);
        match checked {
            Ok(()) => {}
            Err(LinkTargetProblem::Escapes) => {
                return Err(BundleError::LinkEscapes {
                    path: target.display.clone(),
                    target: target_display,
                })
            }
            Err(LinkTargetProblem::Refused(reason)) => {
                return Err(BundleError::UnsafeLink {
                    path: target.display.clone(),
                    target: target_display,
                    reason,
                })
            }
        }
        self.count_entry()?;
        self.clear_final(target, "link")?;
        let absolute = self.dest.join(&target.relative);
        // The check above accepted only valid UTF-8, so the display form is the target.
        std::os::unix::fs::symlink(&target_display, &absolute)
            .map_err(Self::io_error(&absolute))?;
        Ok(())
    }

    /// After the end-of-archive marker only zero padding may follow, and the gzip stream must
    /// end cleanly (its checksum is verified when the decoder reaches the end).
    fn check_trailing_data(&self, mut reader: impl Read) -> Result<(), BundleError> {
        let mut buffer = [0u8; 8192];
        let mut total = 0u64;
        loop {
            let read = match reader.read(&mut buffer) {
                Ok(0) => return Ok(()),
                Ok(read) => read,
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(error) => return Err(self.stream_error(error)),
            };
            if buffer[..read].iter().any(|byte| *byte != 0) {
                return Err(self.corrupt("there is data after the end of the archive"));
            }
            total += read as u64;
            if total > MAX_TRAILING_BYTES {
                return Err(self.corrupt("there is too much padding after the end of the archive"));
            }
        }
    }

    fn into_summary(self) -> UnpackSummary {
        let bytes = self.files.values().sum();
        UnpackSummary {
            files: self.files.into_keys().collect(),
            bytes,
        }
    }
}

fn describe_non_directory(metadata: &fs::Metadata) -> &'static str {
    if metadata.file_type().is_symlink() {
        "link"
    } else {
        "file"
    }
}

/// A checked entry name.
struct TargetEntry {
    /// Normal components, at least one when used to create something.
    components: Vec<String>,
    /// `components` joined with '/'.
    relative: String,
    /// The name as written in the archive, for messages.
    display: String,
}

/// Passes at most `remaining` bytes through, then fails and raises `exceeded`.
struct CappedReader<R> {
    inner: R,
    remaining: u64,
    exceeded: Rc<Cell<bool>>,
}

impl<R: Read> Read for CappedReader<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        if buffer.is_empty() {
            return Ok(0);
        }
        if self.remaining == 0 {
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? == 0 {
                return Ok(0);
            }
            self.exceeded.set(true);
            return Err(std::io::Error::other(
                "the archive is larger than the unpack limits allow",
            ));
        }
        let wanted = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(buffer.len());
        let read = self.inner.read(&mut buffer[..wanted])?;
        self.remaining -= read as u64;
        Ok(read)
    }
}
