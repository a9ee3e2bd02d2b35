//! Unpacking untrusted archives: what is refused, and what is accepted.

mod common;

use std::fs;
use std::io::Read as _;
use std::path::Path;
use std::process::Command;

use tar::EntryType;
use wharf_bundle::{unpack, BundleError, UnpackLimits, UnpackSummary};

use crate::common::{
    append_gnu_long, append_pax, append_raw_directory, append_raw_file, append_raw_file_with_mode,
    append_raw_link, append_raw_special, build_tar, describe_tree, gzip, names_in, raw_header,
};

type Build = fn(&mut tar::Builder<Vec<u8>>);

const ABSOLUTE_EVIL: &str = "/tmp/wharf-bundle-test-absolute-evil";

/// Unpacks `gzipped` into `parent/dest`; returns the error or the summary, and checks that
/// nothing appeared in `parent` besides `dest`.
fn unpack_in_sandbox(
    gzipped: &[u8],
    limits: &UnpackLimits,
) -> (Result<UnpackSummary, BundleError>, tempfile::TempDir) {
    let parent = tempfile::tempdir().unwrap();
    let dest = parent.path().join("dest");
    fs::create_dir(&dest).unwrap();
    let result = unpack(gzipped, &dest, limits);
    assert_eq!(
        names_in(parent.path()),
        vec!["dest"],
        "something escaped dest"
    );
    assert!(!Path::new(ABSOLUTE_EVIL).exists(), "something escaped dest");
    (result, parent)
}

/// Builds an archive with `build`, unpacks it and checks it is refused with an error of
/// `variant` whose message contains `expected`.
fn check_rejected_with(build: Build, limits: &UnpackLimits, variant: &str, expected: &str) {
    let gzipped = gzip(&build_tar(build));
    let (result, _parent) = unpack_in_sandbox(&gzipped, limits);
    let error = match result {
        Ok(summary) => panic!("accepted, expected {variant} {expected:?}: {summary:?}"),
        Err(error) => error,
    };
    let debug = format!("{error:?}");
    assert!(
        debug.starts_with(variant),
        "expected {variant}, got {debug}"
    );
    let message = error.to_string();
    assert!(message.contains(expected), "{message:?} lacks {expected:?}");
}

fn check_rejected(build: Build, variant: &str, expected: &str) {
    check_rejected_with(build, &UnpackLimits::default(), variant, expected);
}

#[test]
fn paths_that_climb_out_or_are_absolute_are_rejected() {
    check_rejected(
        |b| append_raw_file(b, "../evil", b"x"),
        "UnsafePath",
        "bundle entry \"../evil\" is not allowed: it climbs out of the bundle with '..'",
    );
    check_rejected(
        |b| append_raw_file(b, "a/../../evil", b"x"),
        "UnsafePath",
        "\"a/../../evil\" is not allowed: it climbs out",
    );
    check_rejected(
        |b| append_raw_file(b, "./../evil", b"x"),
        "UnsafePath",
        "climbs out",
    );
    check_rejected(
        |b| append_raw_file(b, "a/..", b"x"),
        "UnsafePath",
        "climbs out",
    );
    check_rejected(
        |b| append_raw_file(b, ABSOLUTE_EVIL, b"x"),
        "UnsafePath",
        "is not allowed: it is an absolute path",
    );
    check_rejected(
        |b| append_raw_file(b, "C:\\evil", b"x"),
        "UnsafePath",
        "Windows drive letter",
    );
    check_rejected(
        |b| append_raw_file(b, "..\\..\\evil", b"x"),
        "UnsafePath",
        "backslash",
    );
    check_rejected(
        |b| append_raw_file(b, ".", b"x"),
        "UnsafePath",
        "its name is empty",
    );
    check_rejected(
        |b| append_raw_file(b, "", b"x"),
        "UnsafePath",
        "its name is empty",
    );
}

#[test]
fn extension_headers_are_checked_like_plain_names() {
    check_rejected(
        |b| {
            append_gnu_long(
                b,
                b'L',
                format!("{}/../../evil", "a".repeat(150)).as_bytes(),
            );
            append_raw_file(b, "innocent", b"x");
        },
        "UnsafePath",
        "climbs out",
    );
    check_rejected(
        |b| {
            append_pax(b, b'x', &[("path", b"../evil")]);
            append_raw_file(b, "innocent", b"x");
        },
        "UnsafePath",
        "bundle entry \"../evil\" is not allowed",
    );
    check_rejected(
        |b| {
            append_pax(b, b'x', &[("path", b"a\0b")]);
            append_raw_file(b, "innocent", b"x");
        },
        "UnsafePath",
        "NUL byte",
    );
    check_rejected(
        |b| {
            append_pax(b, b'x', &[("linkpath", b"/etc")]);
            append_raw_link(b, EntryType::Symlink, "data", "innocent");
        },
        "LinkEscapes",
        "bundle entry \"data\" is a link to \"/etc\", which points outside the bundle",
    );
    check_rejected(
        |b| {
            append_gnu_long(b, b'K', b"../../../../etc/passwd");
            append_raw_link(b, EntryType::Symlink, "sub/pw", "innocent");
        },
        "LinkEscapes",
        "\"sub/pw\" is a link to \"../../../../etc/passwd\"",
    );
}

#[test]
fn links_that_leave_the_bundle_are_rejected() {
    check_rejected(
        |b| {
            append_raw_link(b, EntryType::Symlink, "link", "/etc");
            append_raw_file(b, "link/passwd", b"root::0:0::/:/bin/sh\n");
        },
        "LinkEscapes",
        "bundle entry \"link\" is a link to \"/etc\", which points outside the bundle",
    );
    check_rejected(
        |b| append_raw_link(b, EntryType::Symlink, "a", "../.."),
        "LinkEscapes",
        "\"a\" is a link to \"../..\"",
    );
    check_rejected(
        |b| append_raw_link(b, EntryType::Symlink, "sub/a", "../../x"),
        "LinkEscapes",
        "\"sub/a\" is a link to \"../../x\"",
    );
    check_rejected(
        |b| append_raw_link(b, EntryType::Symlink, "a", "sub/../.."),
        "UnsafeLink",
        "'..' after a folder name",
    );
    check_rejected(
        |b| append_raw_link(b, EntryType::Symlink, "a", ""),
        "UnsafeLink",
        "it has no target",
    );
}

#[test]
fn nothing_is_written_through_a_link_even_one_pointing_inside() {
    check_rejected(
        |b| {
            append_raw_directory(b, "sub/");
            append_raw_link(b, EntryType::Symlink, "inside", "sub");
            append_raw_file(b, "inside/x", b"x");
        },
        "UnsafePath",
        "\"inside/x\" is not allowed: it lies inside \"inside\", which is a symbolic link",
    );
    check_rejected(
        |b| {
            append_raw_link(b, EntryType::Symlink, "a/b", "../c");
            append_raw_directory(b, "a/b/d/");
        },
        "UnsafePath",
        "which is a symbolic link",
    );
    check_rejected(
        |b| {
            append_raw_link(b, EntryType::Symlink, "dir", ".");
            append_raw_directory(b, "dir/");
        },
        "Conflict",
        "it is a folder, but an earlier entry of the same name is a link",
    );
}

#[test]
fn hard_links_devices_and_fifos_are_rejected() {
    check_rejected(
        |b| append_raw_link(b, EntryType::Link, "h", "/etc/passwd"),
        "UnsupportedEntry",
        "bundle entry \"h\" is a hard link",
    );
    check_rejected(
        |b| append_raw_special(b, "tty", EntryType::Char),
        "UnsupportedEntry",
        "\"tty\" is a character device",
    );
    check_rejected(
        |b| append_raw_special(b, "disk", EntryType::Block),
        "UnsupportedEntry",
        "\"disk\" is a block device",
    );
    check_rejected(
        |b| append_raw_special(b, "pipe", EntryType::Fifo),
        "UnsupportedEntry",
        "\"pipe\" is a fifo (named pipe)",
    );
    check_rejected(
        |b| append_raw_special(b, "vol", EntryType::new(b'V')),
        "UnsupportedEntry",
        "tar entry of unknown type 'V'",
    );
    check_rejected(
        |b| append_raw_special(b, "holes", EntryType::GNUSparse),
        "UnsupportedEntry",
        "\"holes\" is a sparse file",
    );
    check_rejected(
        |b| {
            append_pax(b, b'x', &[("GNU.sparse.major", b"1")]);
            append_raw_file(b, "holes", b"x");
        },
        "UnsupportedEntry",
        "sparse file",
    );
}

#[test]
fn files_and_folders_may_not_replace_each_other() {
    check_rejected(
        |b| {
            append_raw_file(b, "x", b"file");
            append_raw_directory(b, "x/");
        },
        "Conflict",
        "\"x/\" conflicts with an earlier entry: it is a folder, but an earlier entry of the same name is a file",
    );
    check_rejected(
        |b| {
            append_raw_directory(b, "x/");
            append_raw_file(b, "x", b"file");
        },
        "Conflict",
        "it is a file, but an earlier entry of the same name is a folder",
    );
    check_rejected(
        |b| {
            append_raw_file(b, "f", b"file");
            append_raw_file(b, "f/inner", b"x");
        },
        "Conflict",
        "it lies inside \"f\", which is a file, not a folder",
    );
    check_rejected(
        |b| {
            append_raw_file(b, "d/x", b"x");
            append_raw_link(b, EntryType::Symlink, "d", "elsewhere");
        },
        "Conflict",
        "it is a link, but an earlier entry of the same name is a folder",
    );
}

fn limits(max_unpacked_bytes: u64, max_files: u64) -> UnpackLimits {
    UnpackLimits {
        max_unpacked_bytes,
        max_files,
    }
}

#[test]
fn limits_are_enforced() {
    check_rejected_with(
        |b| append_raw_file(b, "big.bin", &[7; 2000]),
        &limits(1000, 100),
        "EntryTooLarge",
        "bundle entry \"big.bin\" is 2.0 KiB, over the limit of 1000 bytes",
    );
    check_rejected_with(
        |b| {
            for name in ["a", "b", "c"] {
                append_raw_file(b, name, &[7; 400]);
            }
        },
        &limits(1000, 100),
        "TooLarge",
        "larger than the limit of 1000 bytes when unpacked",
    );
    // Replacing a file still counts what was written.
    check_rejected_with(
        |b| {
            for _ in 0..3 {
                append_raw_file(b, "same", &[7; 400]);
            }
        },
        &limits(1000, 100),
        "TooLarge",
        "larger than the limit",
    );
    check_rejected_with(
        |b| {
            for index in 0..4 {
                append_raw_file(b, &format!("f{index}"), b"x");
            }
        },
        &limits(1000, 3),
        "TooManyFiles",
        "more than 3 entries (files, folders and links)",
    );
    // Implied parent folders count too.
    check_rejected_with(
        |b| append_raw_file(b, "a/b/c/d", b"x"),
        &limits(1000, 3),
        "TooManyFiles",
        "more than 3 entries",
    );
    // Bytes that are not file contents (here a folder entry carrying 8 MiB of data) are
    // capped too, so a small upload cannot make the server decompress without end.
    check_rejected_with(
        |b| {
            let size = 8 * 1024 * 1024;
            let header = raw_header(b"dir/", EntryType::Directory, size, b"");
            b.append(&header, std::io::repeat(0).take(size)).unwrap();
        },
        &limits(1000, 1),
        "TooLarge",
        "larger than the limit of 1000 bytes",
    );
    check_rejected(
        |b| {
            append_gnu_long(b, b'L', "n".repeat(100_000).as_bytes());
            append_raw_file(b, "x", b"x");
        },
        "Corrupt",
        "extension header holds 100001 bytes",
    );
}

fn check_corrupt(gzipped: &[u8], expected: &str) {
    let (result, _parent) = unpack_in_sandbox(gzipped, &UnpackLimits::default());
    match result {
        Err(BundleError::Corrupt(message)) => {
            assert!(message.contains(expected), "{message:?} lacks {expected:?}")
        }
        other => panic!("expected Corrupt({expected:?}), got {other:?}"),
    }
}

fn valid_archive() -> Vec<u8> {
    build_tar(|b| {
        append_raw_file(b, "a.txt", &[b'a'; 3000]);
        append_raw_file(b, "b.txt", b"b");
    })
}

#[test]
fn damaged_archives_are_rejected() {
    check_corrupt(b"this is not gzip at all", "invalid gzip header");
    check_corrupt(b"", "unexpected end of file");
    check_corrupt(
        &gzip(b"gzip, but not a tar archive"),
        "failed to read entire block",
    );

    let gzipped = gzip(&valid_archive());
    check_corrupt(&gzipped[..gzipped.len() / 2], "incomplete deflate stream");
    // Missing only the gzip trailer (checksum and length).
    check_corrupt(
        &gzipped[..gzipped.len() - 8],
        "at entry \"b.txt\": unexpected end of file",
    );

    let mut flipped = valid_archive();
    flipped[10] ^= 0x55;
    check_corrupt(&gzip(&flipped), "checksum");

    // The header claims 1 MB but the archive holds 100 bytes.
    let mut lying = Vec::new();
    lying.extend_from_slice(raw_header(b"liar.bin", EntryType::Regular, 1_000_000, b"").as_bytes());
    lying.extend_from_slice(&[b'z'; 100]);
    lying.extend_from_slice(&[0; 1024]);
    check_corrupt(
        &gzip(&lying),
        "entry \"liar.bin\" is truncated: its header promises 1000000 bytes",
    );

    let mut trailing = valid_archive();
    trailing.extend_from_slice(b"surprise");
    check_corrupt(&gzip(&trailing), "data after the end of the archive");

    let dangling = build_tar(|b| append_gnu_long(b, b'L', b"name-for-nothing"));
    check_corrupt(&gzip(&dangling), "describes no entry");

    let contradicting = build_tar(|b| {
        append_pax(b, b'x', &[("size", b"5")]);
        append_raw_file(b, "x", b"1234567890");
    });
    check_corrupt(
        &gzip(&contradicting),
        "pax size of 5 bytes but a header size of 10",
    );
}

#[test]
fn destination_must_be_an_existing_empty_real_folder() {
    let parent = tempfile::tempdir().unwrap();
    let gzipped = gzip(&valid_archive());
    let check = |dest: &Path, expected: &str| {
        let error = unpack(&gzipped[..], dest, &UnpackLimits::default()).unwrap_err();
        assert!(
            matches!(error, BundleError::BadDestination { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains(expected), "{error}");
    };
    check(
        &parent.path().join("missing"),
        "create it as an empty folder first",
    );
    fs::write(parent.path().join("file"), "").unwrap();
    check(&parent.path().join("file"), "it is not a folder");
    fs::create_dir(parent.path().join("full")).unwrap();
    fs::write(parent.path().join("full/old"), "").unwrap();
    check(&parent.path().join("full"), "it is not empty");
    std::os::unix::fs::symlink("full", parent.path().join("link")).unwrap();
    check(&parent.path().join("link"), "it is a symbolic link");
}

fn unpack_ok(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> (Vec<String>, UnpackSummary) {
    let gzipped = gzip(&build_tar(build));
    let (result, parent) = unpack_in_sandbox(&gzipped, &UnpackLimits::default());
    let summary = result.unwrap();
    (describe_tree(&parent.path().join("dest")), summary)
}

#[test]
fn later_entries_replace_files_and_links_but_never_their_targets() {
    let (tree, summary) = unpack_ok(|b| {
        append_raw_file(b, "target.txt", b"original");
        append_raw_link(b, EntryType::Symlink, "link", "target.txt");
        append_raw_file(b, "link", b"replaces the link itself");
        append_raw_file(b, "twice.txt", b"first");
        append_raw_file(b, "twice.txt", b"second wins");
        append_raw_file(b, "was-file", b"file");
        append_raw_link(b, EntryType::Symlink, "was-file", "target.txt");
        append_raw_link(b, EntryType::Symlink, "relinked", "target.txt");
        append_raw_link(b, EntryType::Symlink, "relinked", "twice.txt");
    });
    assert_eq!(
        tree,
        vec![
            "link file 644 replaces the link itself",
            "relinked link -> twice.txt",
            "target.txt file 644 original",
            "twice.txt file 644 second wins",
            "was-file link -> target.txt",
        ]
    );
    assert_eq!(summary.files, vec!["link", "target.txt", "twice.txt"]);
    assert_eq!(summary.bytes, 24 + 8 + 11);
}

#[test]
fn modes_are_normalised() {
    let (tree, _) = unpack_ok(|b| {
        append_raw_file_with_mode(b, "setuid", b"x", 0o4755);
        append_raw_file_with_mode(b, "private", b"x", 0o600);
        append_raw_file_with_mode(b, "group-exec", b"x", 0o610);
        append_raw_file_with_mode(b, "sticky", b"x", 0o1666);
        let mut header = raw_header(b"locked/", EntryType::Directory, 0, b"");
        header.set_mode(0o500);
        header.set_cksum();
        b.append(&header, &[][..]).unwrap();
        append_raw_file(b, "locked/inside", b"x");
    });
    assert_eq!(
        tree,
        vec![
            "group-exec file 755 x",
            "locked/ dir 755",
            "locked/inside file 644 x",
            "private file 644 x",
            "setuid file 755 x",
            "sticky file 644 x",
        ]
    );
}

#[test]
fn common_archive_shapes_are_accepted() {
    // "./" prefixes, a root entry, repeated folders, old-style folders, a global pax header
    // as written by `git archive`, pax and GNU long names.
    let long_name = format!("{}/{}.txt", "p".repeat(120), "q".repeat(100));
    let (tree, summary) = unpack_ok(|b| {
        append_pax(b, b'g', &[("comment", b"0123456789abcdef")]);
        append_raw_directory(b, "./");
        append_raw_directory(b, "./sub/");
        append_raw_file(b, "./sub/a.txt", b"a");
        append_raw_directory(b, "sub");
        append_raw_file(b, "old-style-dir/", b"");
        append_pax(
            b,
            b'x',
            &[
                ("path", "pax/ünïcode name.txt".as_bytes()),
                ("mtime", b"1.5"),
            ],
        );
        append_raw_file(b, "truncated-in-header", b"p");
        append_gnu_long(b, b'L', "gnu/long".repeat(30).as_bytes());
        append_raw_file(b, "gnu/long", b"g");
        append_pax(b, b'x', &[("path", long_name.as_bytes())]);
        append_raw_file(b, "ignored", b"l");
    });
    let gnu_long = "gnu/long".repeat(30);
    assert_eq!(
        summary.files,
        vec![
            gnu_long.as_str(),
            "pax/ünïcode name.txt",
            long_name.as_str(),
            "sub/a.txt"
        ]
    );
    assert!(
        tree.contains(&"old-style-dir/ dir 755".to_string()),
        "{tree:?}"
    );
    assert!(
        tree.contains(&"pax/ünïcode name.txt file 644 p".to_string()),
        "{tree:?}"
    );
}

#[test]
fn archives_from_gnu_tar_are_accepted() {
    let source = tempfile::tempdir().unwrap();
    common::write_file(source.path(), "wharf.toml", "name = 'x'\n");
    common::write_file(source.path(), &format!("{}/deep.R", "d".repeat(150)), "1\n");
    let output = tempfile::tempdir().unwrap();
    let archive = output.path().join("bundle.tar.gz");
    let status = Command::new("tar")
        .arg("-czf")
        .arg(&archive)
        .arg("-C")
        .arg(source.path())
        .arg(".")
        .status();
    if !matches!(status, Ok(status) if status.success()) {
        eprintln!("tar is not available; skipping");
        return;
    }
    let bytes = fs::read(&archive).unwrap();
    let (result, _parent) = unpack_in_sandbox(&bytes, &UnpackLimits::default());
    let summary = result.unwrap();
    assert_eq!(
        summary.files,
        vec![
            format!("{}/deep.R", "d".repeat(150)),
            "wharf.toml".to_string()
        ]
    );
}

/// Offsets of the header blocks of an uncompressed tar archive.
fn header_offsets(archive: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut offset = 0;
    while offset + 512 <= archive.len() && archive[offset..offset + 512].iter().any(|b| *b != 0) {
        offsets.push(offset);
        let header = tar::Header::from_byte_slice(&archive[offset..offset + 512]);
        let size = header.entry_size().unwrap() as usize;
        offset += 512 + size.div_ceil(512) * 512;
    }
    offsets
}

#[test]
fn randomly_damaged_archives_never_panic_or_escape() {
    let base = build_tar(|b| {
        append_raw_directory(b, "dir/");
        append_raw_file(b, "dir/a.txt", b"hello");
        append_raw_link(b, EntryType::Symlink, "dir/link", "a.txt");
        append_gnu_long(b, b'L', format!("{}/long.txt", "l".repeat(120)).as_bytes());
        append_raw_file(b, "ignored", b"long");
        append_pax(b, b'x', &[("path", b"pax.txt"), ("size", b"3")]);
        append_raw_file(b, "ignored", b"pax");
        append_raw_file_with_mode(b, "run.sh", b"#!/bin/sh\n", 0o755);
    });
    let offsets = header_offsets(&base);
    assert_eq!(offsets.len(), 8);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % bound as u64) as usize
    };
    for _ in 0..400 {
        let mut damaged = base.clone();
        for _ in 0..1 + next(4) {
            let header = offsets[next(offsets.len())];
            // Names, modes, sizes, types and link names live in the first 512 bytes; keep the
            // checksum right so the damage reaches the entry checks.
            let position = header
                + match next(4) {
                    0 | 1 => next(24),   // start of the name
                    2 => 156 + next(24), // type flag and start of the link name
                    _ => next(345),      // anywhere in the fields
                };
            damaged[position] = match next(4) {
                0 => b'/',
                1 => b'.',
                2 => b'0' + next(10) as u8,
                _ => next(256) as u8,
            };
            let mut block = tar::Header::from_byte_slice(&damaged[header..header + 512]).clone();
            block.set_cksum();
            damaged[header..header + 512].copy_from_slice(block.as_bytes());
        }
        let limits = limits(64 * 1024, 50);
        let (_result, _parent) = unpack_in_sandbox(&gzip(&damaged), &limits);
    }
}
