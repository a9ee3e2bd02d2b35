//! The one error type of this crate. Every message names the offending entry or file and says
//! what to do, because the CLI and the server show them to users as they are.

use std::path::PathBuf;

/// Why packing or unpacking a bundle failed.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// An entry name that could escape the bundle or that a file system cannot hold.
    #[error("bundle entry {path:?} is not allowed: {reason}")]
    UnsafePath { path: String, reason: String },

    /// A symbolic link whose target is absolute or climbs out of the bundle.
    #[error(
        "bundle entry {path:?} is a link to {target:?}, which points outside the bundle; \
         links must be relative and stay inside the app folder (copy the target into the \
         folder, or leave the link out with .wharfignore)"
    )]
    LinkEscapes { path: String, target: String },

    /// A symbolic link whose target is written in a way bundles do not accept.
    #[error("bundle entry {path:?} is a link to {target:?}, which is not allowed: {reason}")]
    UnsafeLink {
        path: String,
        target: String,
        reason: String,
    },

    /// Hard links, devices, fifos, sockets, sparse files and unknown entry types.
    #[error(
        "bundle entry {path:?} is a {kind}; bundles may only hold regular files, folders and \
         symbolic links (leave it out with .wharfignore)"
    )]
    UnsupportedEntry { path: String, kind: String },

    /// Two entries of the same name that cannot both exist (a file and a folder), or an entry
    /// placed inside something that is not a folder.
    #[error("bundle entry {path:?} conflicts with an earlier entry: {reason}")]
    Conflict { path: String, reason: String },

    /// The uncompressed content of the bundle is over the limit.
    #[error(
        "the bundle is larger than the limit of {} when unpacked; leave large files out \
         with .wharfignore, or raise the limit",
        human_bytes(*limit)
    )]
    TooLarge { limit: u64 },

    /// A single entry is bigger than the whole bundle may be.
    #[error(
        "bundle entry {path:?} is {}, over the limit of {} for a whole bundle; leave it out \
         with .wharfignore, or raise the limit",
        human_bytes(*size),
        human_bytes(*limit)
    )]
    EntryTooLarge { path: String, size: u64, limit: u64 },

    /// The bundle holds more entries (files, folders and links) than allowed.
    #[error(
        "the bundle holds more than {limit} entries (files, folders and links); leave some \
         out with .wharfignore, or raise the limit"
    )]
    TooManyFiles { limit: u64 },

    /// The folder to pack holds more than `PackOptions::max_size` bytes of files.
    #[error(
        "the folder {} holds {} of files to bundle, over the limit of {}; the largest are {}; \
         leave large files out with .wharfignore",
        dir.display(),
        human_bytes(*bytes),
        human_bytes(*limit),
        describe_largest(largest)
    )]
    FolderTooLarge {
        dir: PathBuf,
        bytes: u64,
        limit: u64,
        /// The largest files (relative path, bytes), largest first, at most five.
        largest: Vec<(String, u64)>,
    },

    /// The input is not a gzip-compressed tar archive, or it is damaged or truncated.
    #[error(
        "the bundle is not a valid tar.gz archive: {0}; it may have been cut short or \
         damaged in transit, so pack and upload it again"
    )]
    Corrupt(String),

    /// Reading a file to pack, or writing a file while unpacking, failed.
    #[error("could not access {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Writing the packed bundle to its output failed.
    #[error("could not write the bundle: {0}")]
    Write(#[source] std::io::Error),

    /// Listing the folder to pack failed (unreadable folder, malformed ignore file, ...).
    #[error("could not list the files of {}: {message}", dir.display())]
    Walk { dir: PathBuf, message: String },

    /// The folder to pack is not a folder.
    #[error("{} is not a folder; give the app folder (the one holding wharf.toml)", path.display())]
    NotADirectory { path: PathBuf },

    /// A file changed size while it was being packed.
    #[error("{} changed while it was being bundled; run the command again", path.display())]
    ChangedDuringPack { path: PathBuf },

    /// The unpack destination is not an existing, empty, real folder.
    #[error("cannot unpack the bundle into {}: {reason}", path.display())]
    BadDestination { path: PathBuf, reason: String },
}

/// `1536` → `"1.5 KiB"`; exact below 1 KiB.
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit_index = 0;
    while value >= 1024.0 && unit_index + 1 < UNITS.len() {
        value /= 1024.0;
        unit_index += 1;
    }
    format!("{value:.1} {}", UNITS[unit_index])
}

fn describe_largest(largest: &[(String, u64)]) -> String {
    if largest.is_empty() {
        return "none".to_string();
    }
    largest
        .iter()
        .map(|(path, bytes)| format!("{path:?} ({})", human_bytes(*bytes)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use crate::error::human_bytes;

    #[test]
    fn human_bytes_formats_units() {
        let cases = [
            (0, "0 bytes"),
            (1023, "1023 bytes"),
            (1024, "1.0 KiB"),
            (1536, "1.5 KiB"),
            (2 * 1024 * 1024 * 1024, "2.0 GiB"),
            (u64::MAX, "16.0 EiB"),
        ];
        for (bytes, expected) in cases {
            assert_eq!(human_bytes(bytes), expected, "for {bytes}");
        }
    }
}
