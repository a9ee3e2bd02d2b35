//! Small durable file-system helpers.

use std::fs::File;
use std::io::Write;
use std::path::Path;

/// Writes `contents` to `path` atomically and durably: write `path` + `tmp_suffix`, fsync,
/// rename over `path`, fsync the folder. Readers see either the old file or the whole new one.
pub(crate) fn write_atomic(path: &Path, tmp_suffix: &str, contents: &[u8]) -> std::io::Result<()> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(tmp_suffix);
    let tmp_path = std::path::PathBuf::from(tmp_name);
    {
        let mut file = File::create(&tmp_path)?;
        file.write_all(contents)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp_path, path)?;
    sync_parent(path)
}

/// Fsyncs the folder holding `path`, so a rename or creation in it is durable.
pub(crate) fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => File::open(parent)?.sync_all(),
        _ => File::open(".")?.sync_all(),
    }
}

/// Turns an `io::Error` into its message without the " (os error N)" suffix, for messages
/// shown to users ("No such file or directory").
pub(crate) fn plain_io_message(error: &std::io::Error) -> String {
    let text = error.to_string();
    match text.find(" (os error ") {
        Some(index) if text.ends_with(')') => text[..index].to_string(),
        _ => text,
    }
}
