//! Helpers shared by the integration tests: folders on disk, hand-built archives.

#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use flate2::write::GzEncoder;
use flate2::Compression;
use tar::{EntryType, Header};

/// Writes `contents` to `root/relative`, creating parent folders.
pub fn write_file(root: &Path, relative: &str, contents: &str) {
    let path = root.join(relative);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(path, contents).unwrap();
}

pub fn set_mode(root: &Path, relative: &str, mode: u32) {
    fs::set_permissions(root.join(relative), fs::Permissions::from_mode(mode)).unwrap();
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// A tar archive (not compressed) built by `build`.
pub fn build_tar(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    build(&mut builder);
    builder.into_inner().unwrap()
}

/// A header whose name (and link name) bytes are written as given, bypassing the checks of
/// `Header::set_path`, so tests can write what an attacker would.
pub fn raw_header(path: &[u8], entry_type: EntryType, size: u64, link_name: &[u8]) -> Header {
    let mut header = Header::new_gnu();
    {
        let old = header.as_old_mut();
        old.name.fill(0);
        old.name[..path.len()].copy_from_slice(path);
        old.linkname.fill(0);
        old.linkname[..link_name.len()].copy_from_slice(link_name);
    }
    header.set_entry_type(entry_type);
    header.set_mode(0o644);
    header.set_size(size);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_cksum();
    header
}

pub fn append_raw_file(builder: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    let header = raw_header(path.as_bytes(), EntryType::Regular, data.len() as u64, b"");
    builder.append(&header, data).unwrap();
}

pub fn append_raw_file_with_mode(
    builder: &mut tar::Builder<Vec<u8>>,
    path: &str,
    data: &[u8],
    mode: u32,
) {
    let mut header = raw_header(path.as_bytes(), EntryType::Regular, data.len() as u64, b"");
    header.set_mode(mode);
    header.set_cksum();
    builder.append(&header, data).unwrap();
}

pub fn append_raw_directory(builder: &mut tar::Builder<Vec<u8>>, path: &str) {
    let mut header = raw_header(path.as_bytes(), EntryType::Directory, 0, b"");
    header.set_mode(0o755);
    header.set_cksum();
    builder.append(&header, &[][..]).unwrap();
}

pub fn append_raw_link(
    builder: &mut tar::Builder<Vec<u8>>,
    entry_type: EntryType,
    path: &str,
    target: &str,
) {
    let header = raw_header(path.as_bytes(), entry_type, 0, target.as_bytes());
    builder.append(&header, &[][..]).unwrap();
}

pub fn append_raw_special(builder: &mut tar::Builder<Vec<u8>>, path: &str, entry_type: EntryType) {
    let header = raw_header(path.as_bytes(), entry_type, 0, b"");
    builder.append(&header, &[][..]).unwrap();
}

/// A GNU long-name ('L') or long-link ('K') extension entry carrying `name`.
pub fn append_gnu_long(builder: &mut tar::Builder<Vec<u8>>, type_byte: u8, name: &[u8]) {
    let mut data = name.to_vec();
    data.push(0);
    let header = raw_header(
        b"././@LongLink",
        EntryType::new(type_byte),
        data.len() as u64,
        b"",
    );
    builder.append(&header, &data[..]).unwrap();
}

/// A pax extension header ('x' local, 'g' global) with the given records.
pub fn append_pax(builder: &mut tar::Builder<Vec<u8>>, type_byte: u8, records: &[(&str, &[u8])]) {
    let mut data = Vec::new();
    for (key, value) in records {
        // "%d %s=%s\n" where the length counts the whole record, including itself.
        let rest = key.len() + value.len() + 3;
        let mut length = rest + 1;
        while length.to_string().len() + rest != length {
            length += 1;
        }
        data.extend_from_slice(length.to_string().as_bytes());
        data.push(b' ');
        data.extend_from_slice(key.as_bytes());
        data.push(b'=');
        data.extend_from_slice(value);
        data.push(b'\n');
    }
    let header = raw_header(
        b"PaxHeaders/entry",
        EntryType::new(type_byte),
        data.len() as u64,
        b"",
    );
    builder.append(&header, &data[..]).unwrap();
}

/// Every entry under `root` as "path kind", with contents for files ("path file 0644 text")
/// and targets for links, sorted.
pub fn describe_tree(root: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    describe_into(root, root, &mut lines);
    lines.sort();
    lines
}

fn describe_into(root: &Path, dir: &Path, lines: &mut Vec<String>) {
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let relative = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let metadata = fs::symlink_metadata(&path).unwrap();
        if metadata.file_type().is_symlink() {
            let target = fs::read_link(&path).unwrap();
            lines.push(format!("{relative} link -> {}", target.display()));
        } else if metadata.is_dir() {
            lines.push(format!(
                "{relative}/ dir {:o}",
                metadata.permissions().mode() & 0o7777
            ));
            describe_into(root, &path, lines);
        } else {
            let contents = fs::read(&path).unwrap();
            lines.push(format!(
                "{relative} file {:o} {}",
                metadata.permissions().mode() & 0o7777,
                String::from_utf8_lossy(&contents)
            ));
        }
    }
}

/// Names directly inside `dir`, sorted.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
