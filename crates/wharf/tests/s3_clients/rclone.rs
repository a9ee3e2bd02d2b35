//! rclone's S3 backend (provider "Other", path style) against the listener, configured by
//! environment variables only.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use serde_json::Value;

use crate::common::Server;
use crate::support::{
    clean_command, md5_hex, multipart_etag, require_tool, s3_target, stderr, stdout, test_bytes,
    S3Target, MIB,
};

struct Rclone {
    target: S3Target,
    home: tempfile::TempDir,
}

impl Rclone {
    fn start() -> (Server, Rclone) {
        require_tool("rclone", &["version"], "rclone (Debian package rclone)");
        let server = Server::start();
        let target = s3_target(&server);
        let home = tempfile::tempdir().expect("tempdir");
        std::fs::write(home.path().join("rclone.conf"), "").expect("empty rclone.conf");
        (server, Rclone { target, home })
    }

    fn dir(&self) -> &Path {
        self.home.path()
    }

    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&path, bytes).expect("write test file");
        path
    }

    fn run(&self, args: &[&str]) -> Output {
        clean_command("rclone", self.dir())
            .args(args)
            .current_dir(self.dir())
            .env("RCLONE_CONFIG", self.dir().join("rclone.conf"))
            .env("RCLONE_CONFIG_WHARF_TYPE", "s3")
            .env("RCLONE_CONFIG_WHARF_PROVIDER", "Other")
            .env("RCLONE_CONFIG_WHARF_ENDPOINT", &self.target.endpoint)
            .env("RCLONE_CONFIG_WHARF_ACCESS_KEY_ID", &self.target.access_key)
            .env(
                "RCLONE_CONFIG_WHARF_SECRET_ACCESS_KEY",
                &self.target.secret_key,
            )
            .env("RCLONE_CONFIG_WHARF_FORCE_PATH_STYLE", "true")
            .stdin(Stdio::null())
            .output()
            .expect("run rclone")
    }

    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "rclone {args:?} failed ({}):\n{}\n{}",
            output.status,
            stdout(&output),
            stderr(&output)
        );
        stdout(&output)
    }

    fn lsjson(&self, remote: &str, extra: &[&str]) -> Vec<Value> {
        let text = self.ok(&[&["lsjson", remote][..], extra].concat());
        serde_json::from_str(&text)
            .unwrap_or_else(|error| panic!("lsjson {remote}: {error}: {text}"))
    }
}

fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

/// Sets a file's modification time, which rclone stores as X-Amz-Meta-Mtime.
fn set_mtime(path: &Path, unix_seconds: i64) {
    let file = std::fs::File::options()
        .write(true)
        .open(path)
        .expect("open");
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_seconds as u64);
    file.set_modified(time).expect("set mtime");
}

const MTIME: i64 = 981_173_106; // 2001-02-03T04:05:06Z
const MTIME_TEXT: &str = "2001-02-03T04:05:06";

#[test]
fn rclone_copy_ls_cat_link_sync_and_delete() {
    let (_server, rclone) = Rclone::start();
    rclone.ok(&["mkdir", "wharf:rc-files"]);
    let files = [
        ("a.txt", "alpha"),
        ("dir/b.txt", "bravo"),
        ("dir/deeper/c.txt", "charlie"),
        ("ünï cödé/ç +&.txt", "unicode"),
        ("empty", ""),
    ];
    for (name, text) in files {
        let path = rclone.file(&format!("local/{name}"), text.as_bytes());
        set_mtime(&path, MTIME);
    }
    rclone.ok(&["copy", "local", "wharf:rc-files/tree"]);
    let listed = rclone.lsjson("wharf:rc-files/tree", &["-R", "--files-only"]);
    let mut seen: Vec<(String, i64)> = listed
        .iter()
        .map(|e| {
            (
                e["Path"].as_str().unwrap_or("").to_owned(),
                e["Size"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    seen.sort();
    let mut expected: Vec<(String, i64)> = files
        .iter()
        .map(|(n, t)| ((*n).to_owned(), t.len() as i64))
        .collect();
    expected.sort();
    assert_eq!(seen, expected, "lsjson -R");
    for entry in &listed {
        let time = entry["ModTime"].as_str().unwrap_or("");
        assert!(time.starts_with(MTIME_TEXT), "mtime metadata lost: {entry}");
    }
    let ls = rclone.ok(&["ls", "wharf:rc-files/tree/dir"]);
    assert_eq!(
        sorted_lines(&ls),
        ["        5 b.txt", "        7 deeper/c.txt"],
        "{ls}"
    );
    assert_eq!(
        rclone.ok(&["cat", "wharf:rc-files/tree/ünï cödé/ç +&.txt"]),
        "unicode"
    );
    assert_eq!(rclone.ok(&["cat", "wharf:rc-files/tree/empty"]), "");
    let check = rclone.run(&["check", "local", "wharf:rc-files/tree"]);
    assert!(check.status.success(), "rclone check: {}", stderr(&check));

    // A presigned GET URL (rclone link).
    let link = rclone.ok(&["link", "wharf:rc-files/tree/dir/b.txt", "--expire", "1h"]);
    let answer = reqwest::blocking::get(link.trim()).expect("GET link");
    assert_eq!(answer.status().as_u16(), 200, "{link}");
    assert_eq!(answer.text().expect("body"), "bravo");

    // sync deletes what is gone locally.
    std::fs::remove_file(rclone.dir().join("local/dir/b.txt")).expect("rm");
    rclone.ok(&["sync", "local", "wharf:rc-files/tree"]);
    let after = rclone.ok(&["lsf", "-R", "--files-only", "wharf:rc-files/tree"]);
    assert_eq!(
        sorted_lines(&after),
        ["a.txt", "dir/deeper/c.txt", "empty", "ünï cödé/ç +&.txt"],
        "after sync"
    );
    rclone.ok(&["delete", "wharf:rc-files/tree/dir"]);
    let after = rclone.ok(&["lsf", "-R", "--files-only", "wharf:rc-files"]);
    assert_eq!(
        sorted_lines(&after),
        ["tree/a.txt", "tree/empty", "tree/ünï cödé/ç +&.txt"]
    );
    rclone.ok(&["deletefile", "wharf:rc-files/tree/a.txt"]);
    rclone.ok(&["purge", "wharf:rc-files"]);
    let buckets = rclone.ok(&["lsd", "wharf:"]);
    assert!(
        !buckets.contains("rc-files"),
        "purge left the bucket: {buckets}"
    );
}

#[test]
fn rclone_multipart_upload_above_the_cutoff() {
    let (_server, rclone) = Rclone::start();
    rclone.ok(&["mkdir", "wharf:rc-big"]);
    let big = test_bytes(12 * MIB + 12345, 7);
    let path = rclone.file("big.bin", &big);
    set_mtime(&path, MTIME);
    rclone.ok(&[
        "copyto",
        "big.bin",
        "wharf:rc-big/big.bin",
        "--s3-upload-cutoff",
        "5M",
        "--s3-chunk-size",
        "5M",
        "--s3-upload-concurrency",
        "2",
    ]);
    let sums = rclone.ok(&["md5sum", "wharf:rc-big/big.bin"]);
    assert_eq!(
        sums.split_whitespace().next(),
        Some(md5_hex(&big).as_str()),
        "{sums}"
    );
    let listed = rclone.lsjson("wharf:rc-big/big.bin", &[]);
    assert_eq!(listed[0]["Size"], big.len() as i64);
    assert!(
        listed[0]["ModTime"]
            .as_str()
            .unwrap_or("")
            .starts_with(MTIME_TEXT),
        "{listed:?}"
    );
    rclone.ok(&["copyto", "wharf:rc-big/big.bin", "back.bin"]);
    assert!(
        std::fs::read(rclone.dir().join("back.bin")).expect("read") == big,
        "bytes differ"
    );
    let link = rclone.ok(&["link", "wharf:rc-big/big.bin", "--expire", "1h"]);
    let answer = reqwest::blocking::get(link.trim()).expect("GET link");
    let etag = answer
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert_eq!(
        etag.trim_matches('"'),
        multipart_etag(&big, 5 * MIB),
        "uploaded in 5 MiB parts"
    );
    let uploads = rclone.ok(&["backend", "list-multipart-uploads", "wharf:rc-big"]);
    let uploads: Value = serde_json::from_str(&uploads).expect("list-multipart-uploads JSON");
    let open = uploads["rc-big"].as_array().map_or(0, Vec::len);
    assert_eq!(open, 0, "uploads left open: {uploads}");
}

#[test]
fn rclone_lists_2500_keys_with_both_list_versions() {
    let (_server, rclone) = Rclone::start();
    rclone.ok(&["mkdir", "wharf:rc-many"]);
    for index in 0..2500 {
        rclone.file(&format!("many/k{index:05}"), b"");
    }
    rclone.ok(&["copy", "many", "wharf:rc-many/many", "--transfers", "8"]);
    let expected: Vec<String> = (0..2500).map(|i| format!("k{i:05}")).collect();
    for version in ["1", "2"] {
        let listed = rclone.ok(&[
            "lsf",
            "wharf:rc-many/many",
            "--s3-list-chunk",
            "1000",
            "--s3-list-version",
            version,
        ]);
        let keys: Vec<String> = listed.lines().map(str::to_owned).collect();
        assert_eq!(
            keys, expected,
            "ListObjects v{version} paging over 2,500 keys"
        );
    }
    let top = rclone.ok(&["lsf", "wharf:rc-many"]);
    assert_eq!(
        top.trim(),
        "many/",
        "the delimiter listing shows one prefix"
    );
    rclone.ok(&["purge", "wharf:rc-many"]);
}
